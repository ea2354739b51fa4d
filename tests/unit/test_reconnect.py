"""Reconnect backoff and dead-peer detection (pure parts, and pika's checker)."""

from __future__ import annotations

from typing import Any

import pytest

from amqptasks.transport.reconnect import (
    DEAD_PEER_HEARTBEATS,
    RECONNECT_MAX_DELAY,
    Backoff,
    dead_peer_timeout,
)


def test_steps_double_from_the_initial_delay_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.5, cap=5.0)
    assert [backoff.step(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.step(10_000) == 5.0  # no overflow


@pytest.mark.parametrize("failures", [1, 2, 3, 8])
def test_jitter_stays_between_half_and_all_of_the_step(failures: int) -> None:
    backoff = Backoff()
    step = backoff.step(failures)
    assert backoff.delay(failures, rng=lambda: 0.0) == step / 2
    assert backoff.delay(failures, rng=lambda: 1.0) == step
    assert step / 2 <= backoff.delay(failures) <= step <= RECONNECT_MAX_DELAY


def test_no_wait_before_the_first_failure() -> None:
    assert Backoff().delay(0) == 0.0


def test_dead_peer_timeout_is_two_heartbeats() -> None:
    assert DEAD_PEER_HEARTBEATS == 2
    assert dead_peer_timeout(2) == 4
    assert dead_peer_timeout(30) == 60
    assert dead_peer_timeout(0) == 0  # heartbeats off


class _FakePikaConnection:
    bytes_received = 0
    bytes_sent = 0

    def __init__(self) -> None:
        self.timers: list[float] = []

    def _adapter_call_later(self, delay: float, callback: Any) -> object:
        self.timers.append(delay)
        return object()


def test_sync_heartbeat_checker_gives_up_after_about_two_heartbeats() -> None:
    from amqptasks.transport._pika import _HeartbeatChecker

    connection = _FakePikaConnection()
    _HeartbeatChecker(connection, 2)
    # send a heartbeat every half timeout; check for received bytes every timeout
    # (pika: timeout + 5), so a silent broker is dropped after one to two timeouts.
    assert sorted(connection.timers) == [1.0, 2.0]


def test_a_handshake_nobody_answers_is_reported_as_no_answer() -> None:
    from amqptasks import BrokerUnreachable
    from amqptasks.config import BrokerURL
    from amqptasks.transport.errors import connect_error

    pika_says = Exception(
        "Connection.close() called before connection finished opening: prev_state=PROTOCOL "
        "(320): \"Timeout while setting up AMQP to '127.0.0.1'\""
    )
    error = connect_error(pika_says, BrokerURL.parse("amqp://u:secret@h:5672/"))
    assert isinstance(error, BrokerUnreachable)
    assert "no answer within 5s" in str(error)
    assert "secret" not in str(error)


async def test_robust_connection_warns_once_per_outage_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    from yarl import URL

    from amqptasks.transport.robust import RobustConnection

    connection = RobustConnection(URL("amqp://u:secret@127.0.0.1:1/%2F?heartbeat=2"))
    connection._was_connected = True  # as after a first successful connect

    def failed(exc: BaseException | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if exc is None:
            future.cancel()  # aiormq cancels its reader on a silent peer
        else:
            future.set_exception(exc)
        return future

    waiting = asyncio.ensure_future(connection.wait_attempt(timeout=5))
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="amqptasks.transport.robust"):
        await connection._on_connection_close(failed(None))  # the loss
        assert connection.failed_attempts == 0
        assert connection.reconnect_interval == 0.0  # the first attempt goes at once
        await connection._on_connection_close(failed(ConnectionRefusedError("refused")))
        await connection._on_connection_close(failed(ConnectionRefusedError("refused")))
    assert await waiting is False  # woken by the failed attempt, not the timeout
    assert connection.failed_attempts == 2
    assert 0.5 <= connection.reconnect_interval <= 1.0  # the second step, jittered
    assert "refused" in connection.last_error
    assert await connection.wait_attempt(timeout=5) is False  # an attempt already failed
    warnings = [r for r in caplog.records if "broker connection lost" in r.getMessage()]
    assert len(warnings) == 1
    assert connection.outages == 1
    assert "secret" not in caplog.text
    await connection.close()
