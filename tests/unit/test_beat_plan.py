"""The leader's pure decisions: catch-up policies, expiry, runtime changes, entry declarations."""

from __future__ import annotations

import datetime as dt

import pytest

from amqptasks import App, crontab, every, periodic
from amqptasks.beat.changes import Changes, Trigger
from amqptasks.beat.entries import Entry, code_entries, entries_from_beat_schedule, occurrence_id
from amqptasks.beat.plan import Plan, Record
from amqptasks.exceptions import ConfigError

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def entry(name: str = "e", catch_up: str = "latest", **options: object) -> Entry:
    return Entry(
        name, "proj.t", every(60), options=options, catch_up=catch_up, catch_up_window=3600.0
    )


def minutes(*values: int) -> list[dt.datetime]:
    return [T0 + dt.timedelta(minutes=value) for value in values]


@pytest.mark.parametrize(
    ("policy", "expected"), [("all", minutes(1, 2, 3, 4, 5)), ("latest", minutes(5)), ("skip", [])]
)
def test_a_new_leader_catches_up_as_the_policy_says(
    policy: str, expected: list[dt.datetime]
) -> None:
    # The last leader dealt with everything up to T0 and died; now is T0 + 5m30s.
    plan = Plan()
    now = T0 + dt.timedelta(minutes=5, seconds=30)
    todo = plan.take_over([(entry(catch_up=policy), None)], Record(handled_through=T0), now)
    assert [occurrence.instant for occurrence in todo] == expected
    assert [o.instant for o in plan.due(T0 + dt.timedelta(minutes=6))] == minutes(6)


def test_occurrences_the_record_shows_as_sent_are_not_sent_again() -> None:
    # The dead leader sent 12:01 and 12:02 after its last tick (12:00).
    sent = {occurrence_id("e", instant) for instant in minutes(1, 2)}
    record = Record(sent=sent, last_sent={"e": minutes(2)[0]}, handled_through=T0)
    todo = Plan().take_over([(entry(catch_up="all"), None)], record, minutes(3)[0])
    assert [occurrence.instant for occurrence in todo] == minutes(3)


def test_catch_up_stays_within_the_window() -> None:
    late = Entry("e", "proj.t", every(60), catch_up="all", catch_up_window=150.0)
    now = T0 + dt.timedelta(minutes=10)
    todo = Plan().take_over([(late, None)], Record(handled_through=T0), now)
    assert [occurrence.instant for occurrence in todo] == minutes(8, 9, 10)


def test_a_first_beat_ever_catches_nothing_up() -> None:
    todo = Plan().take_over([(entry(catch_up="all"), None)], Record(), T0 + dt.timedelta(hours=1))
    assert todo == []


def test_entries_added_at_runtime_start_when_they_were_added() -> None:
    todo = Plan().take_over(
        [(entry(catch_up="all"), minutes(3)[0])], Record(handled_through=T0), minutes(5)[0]
    )
    assert [occurrence.instant for occurrence in todo] == minutes(4, 5)


def test_occurrences_later_than_their_expires_are_not_sent() -> None:
    plan = Plan()
    short = entry(catch_up="all", expires=90)
    todo = plan.take_over([(short, None)], Record(handled_through=T0), minutes(5)[0])
    assert [occurrence.instant for occurrence in todo] == minutes(4, 5)
    assert todo[0].expires_at == minutes(4)[0] + dt.timedelta(seconds=90)
    # a stalled loop: 12:06 is due at 12:08, past its 90 s
    assert [o.instant for o in plan.due(minutes(8)[0])] == minutes(7, 8)


def test_a_removed_entry_is_no_longer_due() -> None:
    plan = Plan()
    plan.take_over([(entry(), None), (entry("f"), None)], Record(handled_through=T0), T0)
    plan.remove("e")
    assert [o.entry.name for o in plan.due(minutes(1)[0])] == ["f"]


def test_occurrence_ids_name_entry_and_instant() -> None:
    assert occurrence_id("e", T0) == occurrence_id(
        "e", T0.astimezone(dt.timezone(dt.timedelta(hours=8)))
    )
    assert occurrence_id("e", T0) != occurrence_id("f", T0)
    assert occurrence_id("e", T0) != occurrence_id("e", minutes(1)[0])


def change(op: str, name: str, minute: int, **fields: object) -> dict[str, object]:
    return {"op": op, "name": name, "at": minutes(minute)[0].isoformat(), "id": "r1", **fields}


def test_changes_fold_runtime_entries_and_pauses() -> None:
    code = Entry("nightly", "proj.nightly", crontab(minute=0, hour=3))
    changes = Changes(code={"nightly": code})
    added = entry("rt").to_dict()
    assert changes.apply(change("add", "rt", 1, entry=added)) == "rt"
    assert changes.apply(change("pause", "nightly", 2)) == "nightly"
    assert [e.name for e, _ in changes.active()] == ["rt"]
    assert changes.apply(change("resume", "nightly", 3)) == "nightly"
    assert dict((e.name, since) for e, since in changes.active()) == {
        "nightly": minutes(3)[0],
        "rt": minutes(1)[0],
    }
    assert changes.apply(change("trigger", "rt", 4)) == Trigger("rt", "r1", minutes(4)[0])
    assert changes.apply(change("remove", "nightly", 5)) is None  # code entries stay
    assert changes.apply(change("add", "nightly", 5, entry=added)) is None
    assert changes.apply(change("remove", "rt", 6)) == "rt"
    assert changes.apply(change("pause", "ghost", 7)) is None
    assert changes.apply({"op": "add", "name": "bad", "at": "x"}) is None
    assert [e.name for e in changes.all()] == ["nightly"]


def test_beat_schedule_reads_celery_entries() -> None:
    found = entries_from_beat_schedule(
        {
            "add-every-30": {"task": "proj.add", "schedule": 30.0, "args": (16, 16)},
            "nightly": {
                "task": "proj.report",
                "schedule": crontab(minute=0, hour=3),
                "kwargs": {"full": True},
                "options": {"queue": "reports", "priority": 5, "expires": 600},
                "timezone": "Asia/Shanghai",
                "catch_up": "all",
            },
        }
    )
    assert [e.name for e in found] == ["add-every-30", "nightly"]
    assert found[0].schedule == every(30) and found[0].args == (16, 16)
    assert found[1].options["queue"] == "reports"
    assert Entry.from_dict(found[1].to_dict()) == found[1]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"task": "t"}, "needs schedule"),
        ({"task": "t", "schedule": 1, "relative": True}, "unknown key"),
        ({"task": "t", "schedule": 1, "options": {"countdown": 3}}, "per-occurrence option"),
        ({"task": "t", "schedule": 1, "options": {"expires": -1}}, "expires must be seconds"),
        ({"task": "t", "schedule": 1, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"task": "t", "schedule": 1, "catch_up": "some"}, "catch_up must be one of"),
        ({"task": "t", "schedule": object()}, "cannot use"),
    ],
)
def test_bad_entries_are_refused_in_one_line(item: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        entries_from_beat_schedule({"x": item})


def test_code_entries_come_from_settings_add_periodic_task_and_the_decorator() -> None:
    app = App(
        "beatunit",
        broker_url="amqp://guest:guest@127.0.0.1:1//",
        beat_schedule={
            "a": {"task": "proj.a", "schedule": 10.0},
        },
    )

    @periodic(crontab(minute=0, hour=3), name="nightly", queue="reports")
    @app.task(name="proj.nightly")
    def nightly() -> None: ...

    assert app.add_periodic_task(60, "proj.b", name="b", args=(1,), expires=30) == "b"
    found = {e.name: e for e in code_entries(app)}
    assert list(found) == ["a", "nightly", "b"]
    assert found["nightly"].task == "proj.nightly" and found["nightly"].options == {
        "queue": "reports"
    }
    assert found["b"].args == (1,) and found["b"].options == {"expires": 30}
    with pytest.raises(ConfigError, match="already declared differently"):
        app.add_periodic_task(30, "proj.b", name="b")


def test_settings_check_the_beat_group() -> None:
    for bad, message in (
        ({"timezone": "Nowhere/Land"}, "timezone must be an IANA name"),
        ({"beat_catch_up": "sometimes"}, "beat_catch_up must be one of"),
        ({"beat_catch_up_window": 0}, "beat_catch_up_window must be a number > 0"),
        ({"beat_schedule": [1]}, "beat_schedule must be a dict"),
    ):
        with pytest.raises(ConfigError, match=message):
            App("x", broker_url="amqp://guest:guest@127.0.0.1:1//", **bad)
