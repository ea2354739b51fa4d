"""Body compression, with kombu's header values."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib

import pytest

from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol import compression

BODY = b'[[1, 2], {}, {"callbacks": null}]' * 50


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("zlib", "application/x-gzip"),
        ("gzip", "application/x-gzip"),
        ("bz2", "application/x-bz2"),
        ("bzip2", "application/x-bz2"),
        ("lzma", "application/x-lzma"),
        ("xz", "application/x-lzma"),
    ],
)
def test_round_trip_and_header_value(name: str, header: str) -> None:
    codec = compression.codec(name)
    assert codec.content_type == header
    packed = codec.compress(BODY)
    assert packed != BODY
    assert len(packed) < len(BODY)
    assert compression.decompress(packed, header) == BODY


def test_zlib_writes_a_zlib_stream_as_kombu_does() -> None:
    # kombu's "zlib" compression is zlib.compress, labelled application/x-gzip.
    assert zlib.decompress(compression.codec("zlib").compress(BODY)) == BODY


def test_reads_kombu_compressed_bodies() -> None:
    assert compression.decompress(zlib.compress(BODY), "application/x-gzip") == BODY
    assert compression.decompress(bz2.compress(BODY), "application/x-bz2") == BODY
    assert compression.decompress(lzma.compress(BODY), "application/x-lzma") == BODY


def test_reads_a_real_gzip_stream() -> None:
    assert compression.decompress(gzip.compress(BODY), "application/x-gzip") == BODY


def test_codec_by_header_value() -> None:
    assert compression.codec("application/x-bz2") is compression.codec("bz2")


def test_unknown_compression_name() -> None:
    with pytest.raises(ConfigError, match="brotli"):
        compression.codec("brotli")


def test_unknown_compression_header_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="brotli"):
        compression.decompress(BODY, "application/x-brotli")


@pytest.mark.parametrize(
    "header", ["application/x-gzip", "application/x-bz2", "application/x-lzma"]
)
@pytest.mark.parametrize("corrupt", ["garbage", "truncated"])
def test_corrupt_body_is_a_decode_error(header: str, corrupt: str) -> None:
    body = b"this is not compressed at all"
    if corrupt == "truncated":
        body = compression.codec(header).compress(BODY)[:-8]
    with pytest.raises(DecodeError, match="cannot decompress") as info:
        compression.decompress(body, header)
    assert info.value.raw == body
