"""Celery's event and pidbox formats as amqptasks writes and reads them (no broker)."""

from __future__ import annotations

import json
import time

import msgpack
import pytest

from amqptasks.control.events import (
    EventClock,
    event_message,
    events_in,
    events_message,
    make_event,
)
from amqptasks.control.pidbox import ControlRequest, pidbox_queue, reply_message
from amqptasks.control.revokes import RevokeLog, revoke_message
from amqptasks.exceptions import DecodeError


def _command(**extra: object) -> bytes:
    body = {"method": "ping", "arguments": {}, "destination": None, "pattern": None}
    body.update(
        {"matcher": None, "ticket": "t-1", "reply_to": {"exchange": "r", "routing_key": "o"}}
    )
    body.update(extra)
    return json.dumps(body).encode()


def test_an_event_has_celerys_common_fields_and_routing_key() -> None:
    clock = EventClock()
    event = make_event("task-succeeded", "w@h", clock, uuid="id-1", runtime=0.5)
    assert {"hostname", "utcoffset", "pid", "clock", "timestamp", "type"} <= event.keys()
    assert (event["type"], event["uuid"], event["clock"]) == ("task-succeeded", "id-1", 1)
    message = event_message(event)
    assert (message.exchange, message.routing_key) == ("celeryev", "task.succeeded")
    assert message.headers == {"hostname": "w@h"}
    assert json.loads(message.body)["runtime"] == 0.5


def test_a_clock_moves_past_the_clocks_it_sees() -> None:
    clock = EventClock()
    clock.adjust(41)
    assert clock.forward() == 42


def test_a_command_is_for_the_workers_it_names_or_every_worker() -> None:
    request = ControlRequest.parse(_command(destination=["a@h"]), "application/json", {})
    assert request is not None
    assert request.is_for("a@h") and not request.is_for("b@h")
    everyone = ControlRequest.parse(_command(), "application/json", {})
    assert everyone is not None and everyone.is_for("b@h")
    glob = ControlRequest.parse(_command(pattern="a*", matcher="glob"), "application/json", {})
    assert glob is not None and glob.is_for("a@h") and not glob.is_for("b@h")


def test_an_expired_command_is_ignored_and_garbage_is_refused() -> None:
    assert (
        ControlRequest.parse(_command(), "application/json", {"expires": time.time() - 1}) is None
    )
    with pytest.raises(DecodeError):
        ControlRequest.parse(b"[1, 2]", "application/json", {})
    with pytest.raises(DecodeError):
        ControlRequest.parse(b"x", "application/x-python-serialize", {})


def test_the_reply_goes_where_the_client_said_in_its_serializer_with_the_ticket() -> None:
    body = msgpack.packb(json.loads(_command()))
    request = ControlRequest.parse(body, "application/x-msgpack", {})
    assert request is not None and request.wants_reply
    reply = reply_message(request, "w@h", {"ok": "pong"}, 7)
    assert (reply.exchange, reply.routing_key) == ("r", "o")
    assert reply.headers == {"ticket": "t-1", "clock": 7}
    assert msgpack.unpackb(reply.body) == {"w@h": {"ok": "pong"}}
    assert pidbox_queue("w@h") == "w@h.celery.pidbox"


def test_a_revoke_holds_until_it_expires() -> None:
    log = RevokeLog()
    log.add(["a"], time.time() + 60)
    log.add(["b"], time.time() - 1)
    assert log.is_revoked("a") and not log.is_revoked("b") and not log.is_revoked("c")
    assert log.ids() == ["a"]
    record = json.loads(revoke_message(["x"], expires=123.0).body)
    assert (record["ids"], record["expires"]) == (["x"], 123.0)


def test_a_batch_of_task_events_is_one_task_multi_message_celerys_receiver_unpacks() -> None:
    from celery import Celery

    clock = EventClock()
    events = [
        make_event("task-received", "w@h", clock, uuid="id-1", name="t"),
        make_event("task-started", "w@h", clock, uuid="id-1"),
        make_event("task-succeeded", "w@h", clock, uuid="id-1", runtime=0.1),
    ]
    message = events_message(events)
    assert (message.exchange, message.routing_key) == ("celeryev", "task.multi")
    assert message.headers == {"hostname": "w@h"}
    seen: list[dict[str, object]] = []
    receiver = Celery(set_as_current=False).events.Receiver(None, handlers={"*": seen.append})
    receiver._receive(json.loads(message.body), None)
    assert [(e["type"], e["uuid"]) for e in seen] == [
        ("task-received", "id-1"),
        ("task-started", "id-1"),
        ("task-succeeded", "id-1"),
    ]
    assert events_in(json.loads(message.body)) == events


def test_a_batch_of_one_is_a_plain_event_and_events_in_reads_both_forms() -> None:
    event = make_event("task-failed", "w@h", EventClock(), uuid="id-2")
    message = events_message([event])
    assert message.routing_key == "task.failed"
    assert events_in(json.loads(message.body)) == [event]
    assert events_in("not an event") == []


def test_event_bodies_are_json_whatever_the_values_hold() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    events = [
        make_event("task-succeeded", "w@h", EventClock(), uuid="a", result=Odd(), runtime=0.1),
        # past 64 bits: orjson refuses it, the json module writes it
        make_event("task-received", "w@h", EventClock(), uuid="b", retries=2**70, args="(1,)"),
    ]
    body = json.loads(events_message(events).body)
    assert [event["uuid"] for event in body] == ["a", "b"]
    assert body[0]["result"] == "<odd>"
    assert body[1]["retries"] == 2**70
