"""Publisher retries across connection loss: policy, retryable errors, the send loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import amqptasks.app
from amqptasks import App
from amqptasks._retrypublish import PublishRetryPolicy, is_retryable
from amqptasks.config import Settings
from amqptasks.exceptions import (
    AccessRefused,
    AuthenticationFailed,
    BrokerUnreachable,
    ConfigError,
    ConnectionLost,
    NotFound,
    PublishNotConfirmed,
    TopologyMismatch,
    Unroutable,
)

if TYPE_CHECKING:
    from amqptasks.publishing import PreparedCall

URL = "amqp://guest:guest@127.0.0.1:1//"


def _settings(**given: Any) -> Settings:
    return Settings.build({"broker_url": URL, **given}, environ={})


# --------------------------------------------------------------------------- resolve


def test_settings_defaults_are_celerys() -> None:
    policy = PublishRetryPolicy.resolve(_settings(), None, None)
    assert policy == PublishRetryPolicy(
        max_retries=3, interval_start=0, interval_step=0.2, interval_max=0.2
    )


def test_retry_false_means_no_retries() -> None:
    policy = PublishRetryPolicy.resolve(_settings(), False, {"max_retries": 9})
    assert policy.max_retries == 0
    assert list(policy.intervals()) == []


def test_publish_retry_setting_off_unless_the_call_asks() -> None:
    settings = _settings(publish_retry=False)
    assert PublishRetryPolicy.resolve(settings, None, None).max_retries == 0
    assert PublishRetryPolicy.resolve(settings, True, None).max_retries == 3


def test_settings_give_the_defaults() -> None:
    settings = _settings(
        publish_retry_max_retries=5,
        publish_retry_interval_start=1,
        publish_retry_interval_step=2,
        publish_retry_interval_max=4,
    )
    assert PublishRetryPolicy.resolve(settings, True, None) == PublishRetryPolicy(5, 1, 2, 4)


def test_the_call_policy_overrides_settings_key_by_key() -> None:
    policy = PublishRetryPolicy.resolve(
        _settings(publish_retry_interval_max=9), None, {"max_retries": 1, "interval_step": 0.5}
    )
    assert policy == PublishRetryPolicy(
        max_retries=1, interval_start=0, interval_step=0.5, interval_max=9
    )
    assert isinstance(policy.max_retries, int)
    assert isinstance(policy.interval_start, float)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_retry": 3},
        {"interval": 1},
        {"max_retries": -1},
        {"interval_start": -0.1},
        {"interval_step": "0.2"},
        {"interval_max": None},
        {"max_retries": True},
    ],
)
def test_bad_policies_are_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        PublishRetryPolicy.resolve(_settings(), True, policy)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="max_retry") as raised:
        PublishRetryPolicy.resolve(_settings(), None, {"max_retry": 3})
    assert "interval_start" in str(raised.value)  # the known keys are listed


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (PublishRetryPolicy(3, 0, 0.2, 0.2), [0, 0.2, 0.2]),
        (PublishRetryPolicy(5, 0, 1, 3), [0, 1, 2, 3, 3]),
        (PublishRetryPolicy(4, 1, 2, 10), [1, 3, 5, 7]),
        (PublishRetryPolicy(3, 2, 0, 5), [2, 2, 2]),
        (PublishRetryPolicy(4, 0.5, 0.25, 1), [0.5, 0.75, 1, 1]),
        (PublishRetryPolicy(0, 0, 1, 1), []),
    ],
)
def test_intervals_start_then_step_up_to_the_cap(
    policy: PublishRetryPolicy, expected: list[float]
) -> None:
    assert list(policy.intervals()) == pytest.approx(expected)


def test_intervals_count_is_max_retries() -> None:
    assert len(list(PublishRetryPolicy(max_retries=100).intervals())) == 100


# --------------------------------------------------------------------------- is_retryable


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionLost("reset"),
        BrokerUnreachable("refused"),
        PublishNotConfirmed("nack"),
    ],
)
def test_connection_problems_are_retried(exc: BaseException) -> None:
    assert is_retryable(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        Unroutable("no queue"),
        AuthenticationFailed("bad password"),
        NotFound("no exchange"),
        AccessRefused("403"),
        TopologyMismatch("406"),
        ConfigError("bad"),
        ValueError("x"),
        OSError("raw"),
    ],
)
def test_message_or_permission_problems_are_not_retried(exc: BaseException) -> None:
    assert is_retryable(exc) is False


# --------------------------------------------------------------------------- the send loop


class FlakyClient:
    """Stands in for the app's SyncClient: fails ``failures`` times, then confirms."""

    reply_queue = "amqptasks.reply.t.test"

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.calls: list[PreparedCall] = []

    def publish(self, call: PreparedCall) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)


class AsyncFlakyClient(FlakyClient):
    async def publish(self, call: PreparedCall) -> None:  # type: ignore[override]
        FlakyClient.publish(self, call)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(amqptasks.app.time, "sleep", waited.append)
    return waited


def _app(client: FlakyClient, monkeypatch: pytest.MonkeyPatch) -> App:
    app = App("t", broker_url=URL)
    monkeypatch.setattr(app, "_client", lambda: client)
    monkeypatch.setattr(app, "_aclient", lambda: client)
    return app


def test_a_publish_is_retried_with_the_same_message(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FlakyClient([ConnectionLost("reset"), BrokerUnreachable("refused")])
    app = _app(client, monkeypatch)
    result = app.send_task(
        "proj.add",
        (1, 2),
        retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5},
    )
    assert len(client.calls) == 3
    assert len({id(call) for call in client.calls}) == 1  # the very same message
    assert result.id == client.calls[0].message.message_id
    assert sleeps == pytest.approx([0, 0.2])  # capped by the default interval_max


def test_a_publish_gives_up_after_max_retries(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FlakyClient([ConnectionLost(f"reset {n}") for n in range(10)])
    app = _app(client, monkeypatch)
    with pytest.raises(ConnectionLost, match="reset 2"):
        app.send_task("proj.add", retry_policy={"max_retries": 2})
    assert len(client.calls) == 3
    assert len(sleeps) == 2


def test_retry_false_publishes_once(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    client = FlakyClient([ConnectionLost("reset")])
    app = _app(client, monkeypatch)
    with pytest.raises(ConnectionLost):
        app.send_task("proj.add", retry=False)
    assert len(client.calls) == 1
    assert sleeps == []


def test_an_unroutable_publish_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FlakyClient([Unroutable("no queue")])
    app = _app(client, monkeypatch)
    with pytest.raises(Unroutable):
        app.send_task("proj.add")
    assert len(client.calls) == 1
    assert sleeps == []


async def test_an_async_publish_is_retried_with_the_same_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = AsyncFlakyClient([PublishNotConfirmed("nack"), ConnectionLost("reset")])
    app = _app(client, monkeypatch)
    result = await app.asend_task(
        "proj.add", retry_policy={"interval_start": 0, "interval_step": 0, "interval_max": 0}
    )
    assert len(client.calls) == 3
    assert len({id(call) for call in client.calls}) == 1
    assert result.id == client.calls[0].message.message_id


async def test_an_async_publish_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    client = AsyncFlakyClient([ConnectionLost(f"reset {n}") for n in range(10)])
    app = _app(client, monkeypatch)
    with pytest.raises(ConnectionLost, match="reset 1"):
        await app.asend_task(
            "proj.add", retry_policy={"max_retries": 1, "interval_step": 0, "interval_max": 0}
        )
    assert len(client.calls) == 2
