"""Canvas planning (#15): the messages a workflow becomes, in Celery's wire form (no broker)."""

from __future__ import annotations

import json
from typing import Any

import celery
import pytest

from amqptasks import App, ConfigError, chain, chord, group, signature
from amqptasks.canvas import from_dict
from amqptasks.canvas.plan import Call, OpenChord, PlanContext

app = App("canvas-unit")


@app.task
def add(x: int, y: int) -> int:
    return x + y


def _plan(sig: Any, *args: Any) -> list[Any]:
    return sig.clone().plan(args, None, {}, PlanContext(app, reply_to="replies"))[0]


def test_a_signature_is_celerys_dict_and_reads_back_as_celery_does() -> None:
    sig = add.s(2).set(queue="q")
    assert dict(sig) == {
        "task": add.name,
        "args": [2],
        "kwargs": {},
        "options": {"queue": "q"},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }
    theirs = celery.signature(json.loads(json.dumps(sig)))
    assert (theirs.task, tuple(theirs.args), theirs.options) == (add.name, (2,), {"queue": "q"})
    ours = from_dict(json.loads(json.dumps(celery.chain(theirs, theirs.clone()))), app=app)
    assert isinstance(ours, chain) and [s.task for s in ours.tasks] == [add.name, add.name]


def test_a_chain_sends_its_first_step_with_the_rest_reversed_in_the_embed() -> None:
    (first,) = _plan(add.s(1, 1) | add.s(2) | add.si(3, 3))
    assert isinstance(first, Call) and first.args == [1, 1]
    rest = first.options["embed"]["chain"]
    assert [(s["args"], s["immutable"]) for s in rest] == [([3, 3], True), ([2], False)]
    assert all(s["options"]["reply_to"] == "replies" for s in rest)


def test_group_members_carry_group_headers_and_a_chord_opens_its_join_first() -> None:
    calls = _plan(group(add.s(i, i) for i in range(3)))
    assert [c.options["group_index"] for c in calls] == [0, 1, 2]
    assert len({c.options["group_id"] for c in calls}) == 1
    actions = _plan(chord([add.s(1, 1), add.s(2, 2)], add.s(0)))
    assert isinstance(actions[0], OpenChord)
    body = actions[1].options["embed"]["chord"]
    assert body["chord_size"] == 2 and body["options"]["amqptasks_chord"] == actions[0].chord_id


def test_bad_signatures_are_refused_with_one_line() -> None:
    with pytest.raises(ConfigError, match="no app"):
        signature("proj.add").delay()
    with pytest.raises(ConfigError, match="not a signature"):
        from_dict({"args": []})
    with pytest.raises(ConfigError, match="needs a body"):
        _plan(chord([add.s(1, 1)]))
