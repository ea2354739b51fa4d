"""No error, banner, log line or exception text shows any part of a password (#13).

Passwords hold every character a URL treats specially, unencoded and encoded;
each is fed through every path that prints a URL: settings errors, the CLI's
error output (``amqptasks worker``, ``amqptasks call``), the worker's banner and
its debug-level log, and the exceptions' ``str`` and ``repr``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any
from urllib.parse import quote

import pytest

from amqptasks import App, AuthenticationFailed, ConfigError
from amqptasks.config import BrokerURL
from tests.integration.conftest import cli_env, worker_command

#: Distinct chunks joined by URL-special characters: no chunk may appear anywhere.
CHUNKS = ("Kq7x", "Vb3m", "Lp9w", "Zt4r", "Hj2n", "Wc8e", "Fy5u", "Rd6s")
SEPARATORS = ("/", "#", "?", "@", ":", "%", " ", "é☃", "%2F", "//", "@@")


def _password(seed: int) -> str:
    """A password whose chunks are separated by special characters (rotated by seed)."""
    parts: list[str] = []
    for index, chunk in enumerate(CHUNKS):
        parts.append(chunk)
        parts.append(SEPARATORS[(index + seed) % len(SEPARATORS)])
    return "".join(parts[:-1])


PASSWORDS = [_password(seed) for seed in range(3)]


def _leaks(text: str) -> list[str]:
    return [chunk for chunk in CHUNKS if chunk in text]


def _url(broker_url: str, user: str, password: str, *, encode: bool, vhost: str = "/") -> str:
    host = broker_url.split("@", 1)[1].split("/", 1)[0]
    secret = quote(password, safe="") if encode else password
    return f"amqp://{user}:{secret}@{host}/{quote(vhost, safe='')}"


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("encode", [False, True], ids=["raw", "encoded"])
def test_settings_errors_and_reprs_hide_the_password(
    password: str, encode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQPTASKS_BROKER_URL", raising=False)
    good = _url("amqp://x@localhost:5672//", "tasks", password, encode=encode)
    if encode:  # only an encoded password round-trips exactly
        assert BrokerURL.parse(good).password == password
    parsed = BrokerURL.parse(good)
    assert not _leaks(str(parsed) + repr(parsed) + parsed.redacted())
    broken = [
        good.replace("localhost:5672", "localhost:notaport"),
        good.replace("amqp://", "amqp//"),
        good.replace("amqp://", "http://"),
        good + "?heartbeat=often",
        good + "?bogus=1",
        good.replace("localhost:5672", ""),
    ]
    for url in broken:
        with pytest.raises(ConfigError) as caught:
            App("secrets", broker_url=url)
        assert not _leaks(str(caught.value) + repr(caught.value)), (url, str(caught.value))


@pytest.mark.parametrize("password", PASSWORDS[:2])
def test_cli_errors_hide_the_password(broker_url: str, password: str) -> None:
    """A wrong password and a malformed URL: exit 1, one line, no part of the password."""
    wrong = _url(broker_url, "guest", password, encode=True)
    port = broker_url.rsplit(":", 1)[1].split("/", 1)[0]
    malformed = _url(broker_url, "guest", password, encode=False).replace(f":{port}/", ":nope/")
    for url, expected in ((wrong, "AuthenticationFailed"), (malformed, "ConfigError")):
        env = cli_env(url)
        # The worker logs at debug level (tracebacks included, by design); the call at info.
        for command, one_line in (
            (worker_command("-Q", "never", "-l", "debug"), False),
            ([*worker_command()[:3], "call", "-A", "tests.integration.apps.core:app", "x"], True),
        ):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            output = done.stdout + done.stderr
            assert done.returncode == 1, output
            assert expected in output
            if one_line:
                assert "Traceback" not in output
            assert not _leaks(output), output


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_exceptions_hide_the_password(
    broker_url: str, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQPTASKS_BROKER_URL", raising=False)  # it would win over broker_url=
    app = App("secrets", broker_url=_url(broker_url, "guest", PASSWORDS[0], encode=True))
    task = app.task(name="secrets.noop")(lambda: None)
    with pytest.raises(AuthenticationFailed) as caught:
        if transport == "sync":
            task.delay()
        else:
            asyncio.run(task.adelay())
    chain: list[BaseException] = []
    seen: BaseException | None = caught.value
    while seen is not None:  # the causes too: a traceback would show them
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for exc in chain:
        assert not _leaks(str(exc) + repr(exc) + repr(exc.args)), repr(exc)
    app.close()


def test_banner_and_debug_log_hide_the_password(
    rabbit: Any, broker_url: str, start_worker: Any, queue_name: str, core: Any
) -> None:
    """A worker logged in with such a password runs; its whole log never shows it."""
    user = f"sec-{int(time.time() * 1000) % 10**8}"
    rabbit.add_user(user, PASSWORDS[1])
    url = _url(broker_url, user, PASSWORDS[1], encode=True)
    worker = start_worker("-Q", queue_name, "-l", "debug", env={"AMQPTASKS_BROKER_URL": url})
    assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=20) == 5
    log = worker.log()
    assert f"amqp://{user}:***@" in log  # the banner shows where, masked
    assert not _leaks(log), log


def test_a_missing_vhost_is_the_documented_error(
    broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/errors.md: AuthenticationFailed naming the vhost, for both transports."""
    monkeypatch.delenv("AMQPTASKS_BROKER_URL", raising=False)
    url = _url(broker_url, "guest", "guest", encode=True, vhost="no-such-vhost")
    app = App("secrets", broker_url=url)
    task = app.task(name="secrets.noop")(lambda: None)
    for send in (task.delay, lambda: asyncio.run(task.adelay())):
        with pytest.raises(AuthenticationFailed, match="no-such-vhost"):
            send()
    app.close()
    done = subprocess.run(
        worker_command("-Q", "never"), env=cli_env(url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "AuthenticationFailed" in done.stderr
    assert "no-such-vhost" in done.stderr
    assert "Connection.Close" not in done.stderr
