"""Decoding a delivery: every header the worker reads is checked, sizes are bounded (#13)."""

from __future__ import annotations

import asyncio
import bz2
import datetime as dt
import decimal
import json
import lzma
import zlib
from typing import Any

import pytest

from amqptasks import constants
from amqptasks.config import Settings
from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol.envelope import build_task_message, parse_task_message
from amqptasks.worker.decode import INLINE_INFLATE, decode_delivery

ACCEPT = ("json", "msgpack", "yaml")
GOOD = {"task": "proj.add", "id": "id-1"}


def _parse(
    body: Any = ([1], {}, None), content_type: str = "application/json", **headers: Any
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_task_message(
        raw, headers={**GOOD, **headers}, content_type=content_type, accept_content=ACCEPT
    )


def _reason(**kwargs: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        _parse(**kwargs)
    assert str(caught.value)  # the text names the problem
    return caught.value.reason


@pytest.mark.parametrize("embed", [[1, 2], "chain", 7, 1.5, True])
def test_an_embed_that_is_not_a_mapping_is_a_decode_error(embed: Any) -> None:
    # Before: dict(parsed.embed) raised in the worker, outside its error handling.
    with pytest.raises(DecodeError, match="third item") as caught:
        _parse(body=[[1], {}, embed])
    assert caught.value.reason == constants.REASON_DECODE_ERROR


def test_an_embed_with_keys_that_are_not_text_is_refused() -> None:
    body = b"- [1]\n- {}\n- {1: 1, chain: null}\n"  # YAML keeps keys of any type
    with pytest.raises(DecodeError, match="third item"):
        _parse(body=body, content_type="application/x-yaml")


@pytest.mark.parametrize("retries", [-1, -100, "2", 1.5, True, [1], b"3"])
def test_retries_that_is_not_a_count_is_a_bad_message(retries: Any) -> None:
    # Before: int(-1) gave attempts=-2 and extra retries; "2" counted as 2.
    assert _reason(retries=retries) == constants.REASON_BAD_MESSAGE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        (1, True),
        (0, False),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
        (b"false", False),
    ],
)
def test_ignore_result_as_text_means_what_it_says(value: Any, expected: bool) -> None:
    # Before: bool("false") is True, so a caller's "false" lost its result.
    assert _parse(ignore_result=value).ignore_result is expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, 1.0, [True], {"a": 1}])
def test_ignore_result_that_means_nothing_is_a_bad_message(value: Any) -> None:
    assert _reason(ignore_result=value) == constants.REASON_BAD_MESSAGE


@pytest.mark.parametrize(
    "headers",
    [
        {"task": 7},
        {"task": ["a"]},
        {"task": b"\xff\xfe"},
        {"id": {"a": 1}},
        {"eta": "zzz"},
        {"eta": 12},
        {"expires": "2024-13-45"},
        {"expires": ["2024-01-01"]},
        {"timelimit": "10"},
        {"timelimit": [1, 2, 3]},
        {"timelimit": ["a", None]},
        {"timelimit": [-1, None]},
        {"timelimit": [float("nan"), None]},
        {"group": 5},
        {"root_id": [1]},
        {"parent_id": 1.5},
        {"origin": {"x": 1}},
        {"compression": 3},
    ],
)
def test_a_header_of_the_wrong_type_or_value_is_a_bad_message(headers: dict[str, Any]) -> None:
    assert _reason(**headers) == constants.REASON_BAD_MESSAGE


def test_headers_of_other_amqp_types_that_mean_the_same_are_read() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    parsed = _parse(
        task=b"proj.add",
        eta=when,
        expires="2030-01-02T03:04:05Z",
        timelimit=[decimal.Decimal("2.5"), 1],
        retries=2**40,
        group=b"g",
    )
    assert parsed.task == "proj.add"
    assert parsed.eta == when.isoformat()
    assert parsed.timelimit == (1.0, 2.5)
    assert parsed.retries == 2**40
    assert parsed.group == "g"


def test_kwargs_names_must_be_text() -> None:
    body = b"- []\n- {1: x}\n- null\n"
    with pytest.raises(DecodeError, match="kwargs names"):
        _parse(body=body, content_type="application/x-yaml")


def test_msgpack_nesting_error_has_text() -> None:
    # Before: "cannot decode msgpack body of task ...: " and nothing after.
    deep = b"\x91" * 2000 + b"\xc0"
    with pytest.raises(DecodeError, match="nested too deeply"):
        _parse(body=deep, content_type="application/x-msgpack")


# -- size limits --------------------------------------------------------------------------


class _Delivery:
    """What decode_delivery reads of a delivery."""

    def __init__(self, body: bytes, headers: dict[str, Any], content_type: str) -> None:
        self.body = body
        self.headers = headers
        self.content_type = content_type
        self.reply_to = None
        self.correlation_id = None


def _decode(body: bytes, settings: Settings, **headers: Any) -> Any:
    delivery = _Delivery(body, {**GOOD, **headers}, "application/json")
    return asyncio.run(decode_delivery(delivery, settings))  # type: ignore[arg-type]


def _bomb(compress: Any, size: int) -> bytes:
    # A JSON body padded with spaces: it inflates to `size` bytes.
    return compress(b"[[], {}, null]" + b" " * size)


@pytest.mark.parametrize(
    ("compress", "header"),
    [
        (zlib.compress, "application/x-gzip"),
        (bz2.compress, "application/x-bz2"),
        (lzma.compress, "application/x-lzma"),
    ],
)
def test_a_bomb_is_too_large_and_never_inflated_whole(compress: Any, header: str) -> None:
    settings = Settings(max_inflated_size=4 * INLINE_INFLATE)
    bomb = _bomb(compress, 64 * 1024 * 1024)  # a few KB that inflate to 64 MiB
    assert len(bomb) < 100_000
    with pytest.raises(DecodeError, match="max_inflated_size") as caught:
        _decode(bomb, settings, compression=header)
    assert caught.value.reason == constants.REASON_TOO_LARGE
    # under the limit (inflated in the executor, past INLINE_INFLATE), it decodes
    fits = _bomb(compress, 2 * INLINE_INFLATE)
    assert _decode(fits, settings, compression=header).args == []


def test_a_body_over_max_message_size_is_too_large() -> None:
    settings = Settings(max_message_size=1000)
    body = json.dumps([["x" * 2000], {}, None]).encode()
    with pytest.raises(DecodeError, match="max_message_size") as caught:
        _decode(body, settings)
    assert caught.value.reason == constants.REASON_TOO_LARGE


def test_a_truncated_compressed_body_is_a_decode_error() -> None:
    body = zlib.compress(b"[[], {}, null]")[:-3]
    with pytest.raises(DecodeError, match="truncated") as caught:
        _decode(body, Settings(), compression="application/x-gzip")
    assert caught.value.reason == constants.REASON_DECODE_ERROR


@pytest.mark.parametrize("name", ["max_message_size", "max_inflated_size"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True, None])
def test_size_settings_are_checked(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(**{name: value})


def test_size_settings_come_from_the_environment() -> None:
    settings = Settings.build(
        {}, {"AMQPTASKS_MAX_MESSAGE_SIZE": "1024", "AMQPTASKS_MAX_INFLATED_SIZE": "2048"}
    )
    assert (settings.max_message_size, settings.max_inflated_size) == (1024, 2048)


def _message(**options: Any) -> Any:
    return build_task_message(
        task="proj.add",
        task_id="t1",
        args=["x" * 5000],
        kwargs={},
        exchange="",
        routing_key="q",
        **options,
    )


def test_the_producer_refuses_what_a_worker_would_refuse() -> None:
    with pytest.raises(ConfigError, match="max_message_size"):
        _message(max_message_size=1000)
    with pytest.raises(ConfigError, match="max_inflated_size"):
        _message(compression_method="zlib", max_inflated_size=1000, max_message_size=10**6)
    # compressed below max_message_size and inflating within max_inflated_size: sent
    assert _message(compression_method="zlib", max_message_size=1000, max_inflated_size=10**6)
