"""Body compression, named in the ``compression`` header as kombu does.

The header holds kombu's content type so Celery can read our messages and we
can read Celery's: ``zlib``/``gzip`` -> ``application/x-gzip`` (a zlib stream,
as kombu writes it; we also read real gzip streams), ``bz2`` ->
``application/x-bz2``, ``lzma``/``xz`` -> ``application/x-lzma``.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from amqptasks.constants import REASON_TOO_LARGE
from amqptasks.exceptions import ConfigError, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable


class _Decompressor(Protocol):
    """What zlib, bz2 and lzma decompressor objects have in common."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int, /) -> bytes: ...


def _inflate(data: bytes) -> bytes:
    # wbits 47 = 32 + 15: accept a zlib or a gzip header.
    return zlib.decompress(data, 47)


@dataclass(frozen=True)
class Codec:
    """A compression method: the header value and the two functions."""

    content_type: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


_GZIP = Codec("application/x-gzip", zlib.compress, _inflate)
_BZ2 = Codec("application/x-bz2", bz2.compress, bz2.decompress)
_LZMA = Codec("application/x-lzma", lzma.compress, lzma.decompress)

_BY_NAME: dict[str, Codec] = {
    "zlib": _GZIP,
    "gzip": _GZIP,
    "bz2": _BZ2,
    "bzip2": _BZ2,
    "lzma": _LZMA,
    "xz": _LZMA,
}
_BY_CONTENT_TYPE: dict[str, Codec] = {c.content_type: c for c in (_GZIP, _BZ2, _LZMA)}


def codec(name: str) -> Codec:
    """The codec for a name (``zlib``) or header value (``application/x-gzip``).

    Raises:
        ConfigError: for an unknown method.
    """
    found = _BY_NAME.get(name) or _BY_CONTENT_TYPE.get(name)
    if found is None:
        raise ConfigError(f"unknown compression {name!r}; known: {', '.join(sorted(_BY_NAME))}")
    return found


def _decompressor(codec: Codec) -> Callable[[], _Decompressor]:
    if codec is _BZ2:
        return bz2.BZ2Decompressor
    if codec is _LZMA:
        return lzma.LZMADecompressor
    return lambda: zlib.decompressobj(47)  # zlib or gzip header, as _inflate


def _inflate_limited(codec: Codec, body: bytes, limit: int) -> bytes:
    """Inflate ``body`` (one or more concatenated streams), never past ``limit + 1`` bytes."""
    make = _decompressor(codec)
    chunks: list[bytes] = []
    total = 0
    data = body
    while True:
        decompressor = make()
        # max_length bounds what one call returns: a 1 KB bomb cannot take 2 GiB here.
        out = decompressor.decompress(data, limit - total + 1)
        total += len(out)
        if total > limit:
            raise DecodeError(
                f"compressed body inflates to more than {limit} bytes (max_inflated_size)",
                raw=body[:64],
                reason=REASON_TOO_LARGE,
            )
        chunks.append(out)
        if not decompressor.eof:
            raise DecodeError("compressed body is truncated (the stream has no end)", raw=body)
        data = decompressor.unused_data
        if not data:
            return b"".join(chunks)


def decompress(body: bytes, header_value: str, *, max_size: int | None = None) -> bytes:
    """Undo the compression named by a message's ``compression`` header.

    Args:
        body: The compressed body.
        header_value: The ``compression`` header (``application/x-gzip``) or a name.
        max_size: Refuse to inflate past this many bytes (None: no limit). The
            decompressor stops one byte past it, so a small "bomb" never takes
            more memory than this.

    Raises:
        DecodeError: for an unknown method, a corrupt or truncated body, or (with
            ``reason`` ``too-large``) one that inflates to more than ``max_size``.
    """
    found = _BY_CONTENT_TYPE.get(header_value) or _BY_NAME.get(header_value)
    if found is None:
        raise DecodeError(f"unknown compression {header_value!r}", raw=body)
    try:
        if max_size is None:
            return found.decompress(body)
        return _inflate_limited(found, body, max_size)
    except (zlib.error, OSError, lzma.LZMAError, ValueError, EOFError) as exc:
        raise DecodeError(f"cannot decompress body ({header_value}): {exc}", raw=body) from exc
