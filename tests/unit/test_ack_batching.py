"""How the worker turns settlements into frames (amqptasks.worker.acks)."""

from __future__ import annotations

import random

import pytest
from pika.spec import Basic

from amqptasks.worker.acks import Action, settlement_frames


def _describe(frames: list[object]) -> list[tuple[str, int, bool]]:
    described = []
    for frame in frames:
        if isinstance(frame, Basic.Ack):
            described.append(("ack", frame.delivery_tag, frame.multiple))
        elif isinstance(frame, Basic.Nack):
            described.append(("requeue", frame.delivery_tag, frame.multiple))
        else:
            assert isinstance(frame, Basic.Reject)
            described.append(("reject", frame.delivery_tag, False))
    return described


def test_acks_of_the_oldest_deliveries_become_one_multiple_ack() -> None:
    unsettled = {1, 2, 3, 4, 5}
    frames = settlement_frames(unsettled, [("ack", 2), ("ack", 1), ("ack", 3)])
    assert _describe(frames) == [("ack", 3, True)]
    assert unsettled == {4, 5}


def test_a_running_delivery_is_never_covered_by_a_multiple_ack() -> None:
    unsettled = {1, 2, 3, 4, 5}
    frames = settlement_frames(unsettled, [("ack", 1), ("ack", 2), ("ack", 4), ("ack", 5)])
    # 3 still runs: 1-2 together, 4 and 5 one by one.
    assert _describe(frames) == [("ack", 2, True), ("ack", 4, False), ("ack", 5, False)]
    assert unsettled == {3}


def test_a_single_ack_is_sent_without_multiple() -> None:
    unsettled = {7, 8}
    assert _describe(settlement_frames(unsettled, [("ack", 7)])) == [("ack", 7, False)]


def test_acks_before_a_nack_are_sent_first_and_never_cover_it() -> None:
    unsettled = {1, 2, 3, 4}
    frames = settlement_frames(
        unsettled, [("ack", 1), ("ack", 3), ("requeue", 2), ("ack", 4), ("reject", 5)]
    )
    # 2 is still unsettled when 1 and 3 are sent, so they go one by one; after the
    # nack of 2, 3's ack has already left and 4 is alone. 5 was never delivered here.
    assert _describe(frames) == [
        ("ack", 1, False),
        ("ack", 3, False),
        ("requeue", 2, False),
        ("ack", 4, False),
    ]
    assert unsettled == set()


def test_a_delivery_is_settled_once() -> None:
    unsettled = {1, 2}
    frames = settlement_frames(unsettled, [("ack", 1), ("reject", 1), ("ack", 2)])
    assert _describe(frames) == [("ack", 2, True)]
    assert settlement_frames(unsettled, [("ack", 1)]) == []


@pytest.mark.parametrize("seed", range(20))
def test_random_settlement_orders_settle_each_delivery_exactly_once(seed: int) -> None:
    """Replay the frames against a model of the broker's per-channel bookkeeping."""
    rng = random.Random(seed)
    tags = list(range(1, 60))
    broker_unacked = set(tags)
    outcome: dict[int, str] = {}
    unsettled = set(tags)
    pending = tags[:]
    rng.shuffle(pending)
    while pending:
        batch = pending[: rng.randint(1, 8)]
        pending = pending[len(batch) :]
        ops: list[tuple[Action, int]] = [
            (rng.choice(("ack", "ack", "ack", "requeue", "reject")), tag) for tag in batch
        ]
        for kind, tag, multiple in _describe(settlement_frames(unsettled, ops)):
            covered = {t for t in broker_unacked if t <= tag} if multiple else {tag}
            assert tag in broker_unacked, f"{kind} of unknown delivery tag {tag}"
            for t in covered:
                outcome[t] = kind
            broker_unacked -= covered
        for kind, tag in ops:
            assert outcome[tag] == kind, f"tag {tag} asked {kind}, broker did {outcome[tag]}"
    assert broker_unacked == set()
    assert unsettled == set()
