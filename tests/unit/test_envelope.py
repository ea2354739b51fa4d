"""Celery message protocol v2: building and parsing task messages."""

from __future__ import annotations

import json
import os
import socket
import uuid
import zlib
from typing import Any

import pytest

from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol import serializers
from amqptasks.protocol.envelope import (
    REPR_LIMIT,
    OutgoingMessage,
    build_task_message,
    parse_task_message,
)

ACCEPT = ("json", "msgpack", "yaml")
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

#: The headers Celery 5 puts on a task message (``group_index`` included).
CELERY_V2_HEADERS = {
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
}


def _build(**overrides: Any) -> OutgoingMessage:
    options: dict[str, Any] = {
        "task": "proj.tasks.add",
        "task_id": "11111111-2222-3333-4444-555555555555",
        "args": (2, 3),
        "kwargs": {"z": 1},
        "exchange": "",
        "routing_key": "default",
    }
    options.update(overrides)
    return build_task_message(**options)


def _parse(message: OutgoingMessage, accept: tuple[str, ...] = ACCEPT) -> Any:
    return parse_task_message(
        message.body,
        headers=message.headers,
        content_type=message.content_type,
        accept_content=accept,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
    )


# -- build -----------------------------------------------------------------------------------


def test_headers_are_exactly_celerys() -> None:
    message = _build()
    assert set(message.headers) == CELERY_V2_HEADERS
    assert message.headers == {
        "lang": "py",
        "task": "proj.tasks.add",
        "id": "11111111-2222-3333-4444-555555555555",
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": "11111111-2222-3333-4444-555555555555",
        "parent_id": None,
        "argsrepr": "(2, 3)",  # a tuple, as Celery writes it
        "kwargsrepr": "{'z': 1}",
        "origin": f"{os.getpid()}@{socket.gethostname()}",
        "ignore_result": False,
    }


def test_properties() -> None:
    message = _build(reply_to="amqptasks.reply.app.x", priority=7, routing_key="math")
    assert message.message_id == "11111111-2222-3333-4444-555555555555"
    assert message.correlation_id == message.message_id
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.delivery_mode == 2
    assert message.reply_to == "amqptasks.reply.app.x"
    assert message.priority == 7
    assert (message.exchange, message.routing_key) == ("", "math")


def test_body_is_args_kwargs_embed() -> None:
    message = _build()
    assert json.loads(message.body) == [[2, 3], {"z": 1}, EMBED]


def test_a_workflow_embed_travels_in_the_body_as_celerys() -> None:
    # What a chain of add.s(4) after this call carries (Celery's signature dicts).
    then = {
        "task": "proj.tasks.add",
        "args": [4],
        "kwargs": {},
        "options": {},
        "subtask_type": None,
    }
    message = _build(embed={"chain": [then]})
    assert json.loads(message.body)[2] == {**EMBED, "chain": [then]}
    assert _parse(message).embed == {**EMBED, "chain": [then]}


def test_an_unknown_embed_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"embed may only hold .*'chian'"):
        _build(embed={"chian": []})


def test_lineage_and_options_go_into_headers() -> None:
    message = _build(
        root_id="root-1",
        parent_id="parent-1",
        group="group-1",
        retries=2,
        eta="2030-01-01T00:00:00+00:00",
        expires="2030-01-02T00:00:00+00:00",
        timelimit=(10.0, 20.0),
        ignore_result=True,
        origin="42@builder",
    )
    headers = message.headers
    assert headers["root_id"] == "root-1"
    assert headers["parent_id"] == "parent-1"
    assert headers["group"] == "group-1"
    assert headers["retries"] == 2
    assert headers["eta"] == "2030-01-01T00:00:00+00:00"
    assert headers["expires"] == "2030-01-02T00:00:00+00:00"
    assert headers["timelimit"] == [20.0, 10.0]  # [hard, soft], as Celery writes it
    assert headers["ignore_result"] is True
    assert headers["origin"] == "42@builder"


def test_extra_headers_are_added() -> None:
    message = _build(extra_headers={"x-trace-id": "abc"})
    assert message.headers["x-trace-id"] == "abc"
    assert set(message.headers) >= CELERY_V2_HEADERS


@pytest.mark.parametrize("serializer", ["msgpack", "yaml", "pickle"])
def test_content_type_follows_serializer(serializer: str) -> None:
    info = serializers.by_name(serializer)
    message = _build(serializer=serializer)
    assert message.content_type == info.content_type
    assert message.content_encoding == info.content_encoding
    assert info.serializer.loads(message.body) == [[2, 3], {"z": 1}, EMBED]


def test_compression_sets_kombus_header() -> None:
    message = _build(compression_method="zlib")
    assert message.headers["compression"] == "application/x-gzip"
    assert json.loads(zlib.decompress(message.body)) == [[2, 3], {"z": 1}, EMBED]


def test_unknown_serializer_or_compression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bson"):
        _build(serializer="bson")
    with pytest.raises(ConfigError, match="snappy"):
        _build(compression_method="snappy")


def test_argsrepr_and_kwargsrepr_are_truncated() -> None:
    message = _build(args=["x" * 5000], kwargs={"y": "z" * 5000})
    for key in ("argsrepr", "kwargsrepr"):
        text = message.headers[key]
        assert len(text) == REPR_LIMIT == 1024
        assert text.endswith("...")
    assert message.headers["argsrepr"].startswith("('xxx")
    # The body itself is never truncated.
    assert json.loads(message.body)[0] == ["x" * 5000]


def test_short_repr_is_kept_whole() -> None:
    args = ["x" * (REPR_LIMIT - 5)]  # repr adds "(", quotes, "," and ")": exactly 1024 chars
    message = _build(args=args)
    assert message.headers["argsrepr"] == repr(tuple(args))
    assert len(message.headers["argsrepr"]) == REPR_LIMIT


# -- parse -----------------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml"])
@pytest.mark.parametrize("method", [None, "zlib", "gzip", "bz2", "lzma"])
def test_round_trip(serializer: str, method: str | None) -> None:
    message = _build(
        serializer=serializer,
        compression_method=method,
        args=[1, "two", [3.5, None], {"k": True}],
        kwargs={"name": "héllo"},
        reply_to="replies",
        parent_id="p",
        root_id="r",
        group="g",
        retries=3,
        expires="2030-01-01T00:00:00+00:00",
        timelimit=(5.0, None),
    )
    parsed = _parse(message)
    assert parsed.task == "proj.tasks.add"
    assert parsed.id == "11111111-2222-3333-4444-555555555555"
    assert parsed.args == [1, "two", [3.5, None], {"k": True}]
    assert parsed.kwargs == {"name": "héllo"}
    assert parsed.reply_to == "replies"
    assert parsed.correlation_id == parsed.id
    assert (parsed.root_id, parsed.parent_id, parsed.group) == ("r", "p", "g")
    assert parsed.retries == 3
    assert parsed.expires == "2030-01-01T00:00:00+00:00"
    assert parsed.timelimit == (5.0, None)
    assert parsed.embed == EMBED
    assert parsed.ignore_result is False


def test_pickle_round_trip_when_accepted() -> None:
    message = _build(serializer="pickle", args=[(1, 2), b"raw"])
    parsed = _parse(message, accept=("json", "pickle"))
    assert parsed.args == [(1, 2), b"raw"]


def test_parses_a_message_as_celery_5_sends_it() -> None:
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": "proj.tasks.add",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "(2, 2)",
        "kwargsrepr": "{}",
        "origin": "gen4242@celery-host",
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = b'[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
    parsed = parse_task_message(
        body,
        headers=headers,
        content_type="application/json",
        accept_content=("json",),
        reply_to="7a8b-reply",
        correlation_id=task_id,
    )
    assert parsed.task == "proj.tasks.add"
    assert parsed.id == task_id
    assert parsed.args == [2, 2]
    assert parsed.kwargs == {}
    assert parsed.root_id == task_id
    assert parsed.parent_id is None
    assert parsed.retries == 0
    assert parsed.timelimit == (None, None)
    assert parsed.origin == "gen4242@celery-host"
    assert parsed.reply_to == "7a8b-reply"
    assert parsed.correlation_id == task_id
    assert parsed.embed == EMBED
    assert parsed.headers["stamps"] == {}


def test_parses_a_kombu_zlib_compressed_message() -> None:
    body = zlib.compress(b'[[1], {"a": 2}, {}]')
    headers = {"task": "t", "id": "i", "compression": "application/x-gzip"}
    parsed = parse_task_message(
        body, headers=headers, content_type="application/json", accept_content=("json",)
    )
    assert (parsed.args, parsed.kwargs) == ([1], {"a": 2})


@pytest.mark.parametrize("missing", ["task", "id"])
def test_missing_task_or_id_header(missing: str) -> None:
    message = _build()
    headers = {k: v for k, v in message.headers.items() if k != missing}
    with pytest.raises(DecodeError, match="'task' and 'id'"):
        parse_task_message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            accept_content=ACCEPT,
        )


def test_no_headers_at_all() -> None:
    with pytest.raises(DecodeError, match="'task' and 'id'"):
        parse_task_message(
            b"[[], {}, {}]", headers=None, content_type="application/json", accept_content=ACCEPT
        )


def _parse_body(body: bytes, content_type: str = "application/json") -> Any:
    return parse_task_message(
        body,
        headers={"task": "proj.tasks.add", "id": "abc"},
        content_type=content_type,
        accept_content=ACCEPT,
    )


def test_corrupt_json_body() -> None:
    with pytest.raises(DecodeError, match="cannot decode json") as info:
        _parse_body(b'[[1, 2], {}, {"callbacks": nu')
    assert info.value.content_type == "application/json"


def test_corrupt_msgpack_and_yaml_bodies() -> None:
    with pytest.raises(DecodeError, match="msgpack"):
        _parse_body(b"\xc1\xc1\xc1", "application/x-msgpack")
    with pytest.raises(DecodeError, match="yaml"):
        _parse_body(b"[unclosed: {", "application/x-yaml")


@pytest.mark.parametrize(
    "body",
    [b"{}", b'"text"', b"[[1], {}]", b"[[1], {}, {}, {}]", b"null", b"42"],
)
def test_body_that_is_not_a_three_item_list(body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"not \[args, kwargs, embed\]"):
        _parse_body(body)


@pytest.mark.parametrize("body", [b'["1, 2", {}, {}]', b"[{}, {}, {}]", b"[[1], [], {}]"])
def test_args_must_be_a_list_and_kwargs_a_mapping(body: bytes) -> None:
    with pytest.raises(DecodeError, match="args must be a list"):
        _parse_body(body)


def test_pickle_message_refused_unless_accepted() -> None:
    message = _build(serializer="pickle")
    with pytest.raises(DecodeError, match="accept_content"):
        _parse(message, accept=("json", "msgpack", "yaml"))


def test_unknown_content_type() -> None:
    with pytest.raises(DecodeError, match="content type"):
        _parse_body(b"[[], {}, {}]", "text/plain")


def test_corrupt_compressed_body() -> None:
    message = _build(compression_method="bz2")
    with pytest.raises(DecodeError, match="decompress"):
        parse_task_message(
            message.body[:10],
            headers=message.headers,
            content_type=message.content_type,
            accept_content=ACCEPT,
        )


def test_id_falls_back_to_correlation_id() -> None:
    parsed = parse_task_message(
        b"[[], {}, {}]",
        headers={"task": "t"},
        content_type="application/json",
        accept_content=ACCEPT,
        correlation_id="from-properties",
    )
    assert parsed.id == "from-properties"
