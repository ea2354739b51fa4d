"""How the worker turns settlements into frames (amqptasks.worker.acks)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from pika.spec import Basic

from amqptasks.worker import acks
from amqptasks.worker.acks import AckBatcher, Action, settlement_frames


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


class _Channel:
    """Stands in for a consumer channel: records what the batcher writes, and when."""

    is_closed = False
    unsent = 0

    def __init__(self) -> None:
        self.number = 1
        self.writes: list[list[tuple[str, int, bool]]] = []

    def write(self, methods: list[object]) -> None:
        self.writes.append(_describe(methods))


class _Delivery:
    def __init__(self, channel: _Channel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag


@pytest.fixture
def long_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds last a minute unless a test shortens them: only the other reasons end them."""
    monkeypatch.setattr(acks, "HOLD_TIMEOUT", 60.0)


def _batcher(contended: list[bool], limit: int = 4) -> tuple[AckBatcher, _Channel, list[Any]]:
    channel = _Channel()
    batcher = AckBatcher(hold_while=lambda: contended[0], hold_limit=limit)
    settlements = [batcher.delivered(_Delivery(channel, tag)) for tag in range(1, 11)]  # type: ignore[arg-type]
    return batcher, channel, settlements


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_acks_are_sent_the_next_loop_turn_when_no_work_waits() -> None:
    _, channel, settlements = _batcher([False])
    await settlements[0].ack()
    await _turns()
    assert channel.writes == [[("ack", 1, False)]]


async def test_while_work_waits_acks_are_held_up_to_the_limit_and_sent_as_one_frame(
    long_hold: None,
) -> None:
    _, channel, settlements = _batcher([True], limit=4)
    for settlement in settlements[:3]:
        await settlement.ack()
        await _turns()
    assert channel.writes == []  # held: three of four
    await settlements[3].ack()
    await _turns()
    assert channel.writes == [[("ack", 4, True)]]


async def test_held_acks_leave_when_the_waiting_work_has_started(long_hold: None) -> None:
    batcher, channel, settlements = _batcher([True], limit=8)
    await settlements[0].ack()
    await settlements[1].ack()
    await _turns()
    assert channel.writes == []
    batcher.stop_holding()
    await _turns()
    assert channel.writes == [[("ack", 2, True)]]


async def test_held_acks_leave_after_the_hold_timeout_however_busy_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acks, "HOLD_TIMEOUT", 0.05)
    _, channel, settlements = _batcher([True], limit=8)
    await settlements[0].ack()
    await asyncio.sleep(0.02)
    assert channel.writes == []
    await asyncio.sleep(0.1)
    assert channel.writes == [[("ack", 1, False)]]


async def test_an_ack_that_must_be_written_is_never_held(long_hold: None) -> None:
    _, channel, settlements = _batcher([True], limit=8)
    await settlements[0].ack()  # held
    await asyncio.wait_for(settlements[1].ack(written=True), 5)  # the hold lasts 60 s
    assert channel.writes == [[("ack", 2, True)]]
