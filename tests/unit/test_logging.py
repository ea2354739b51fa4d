"""Logging: secrets are masked, and the library is silent until configured."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from amqptasks.logging import configure_logging, get_logger, redact, redact_secrets

if TYPE_CHECKING:
    from collections.abc import Iterator

NOISY = ("pika", "aiormq", "aio_pika")


@pytest.fixture
def logging_state() -> Iterator[None]:
    """Restore stdlib logging and structlog after a test that configures them."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    noisy_levels = {name: logging.getLogger(name).level for name in NOISY}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, noisy_level in noisy_levels.items():
            logging.getLogger(name).setLevel(noisy_level)
        structlog.reset_defaults()


# -- redact ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:s3cret@host:5672//", "amqp://guest:***@host:5672//"),
        ("amqps://svc:s3cret@rabbit:5671/prod", "amqps://svc:***@rabbit:5671/prod"),
        ("http://admin:s3cret@rabbit:15672/api", "http://admin:***@rabbit:15672/api"),
        (
            "connect to amqp://a:one@h1// then amqp://b:two@h2//",
            "connect to amqp://a:***@h1// then amqp://b:***@h2//",
        ),
        ("amqp://host:5672//", "amqp://host:5672//"),
        # An unencoded "@" in the password: all of it is hidden, not just its start.
        ("amqp://u:p@ss-tail@host//", "amqp://u:***@host//"),
        ("no url here, user@example.com", "no url here, user@example.com"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_secrets_masks_secret_keys_and_urls() -> None:
    event: dict[str, Any] = {
        "event": "connecting",
        "password": "hunter2",
        "token": "tok-123",
        "secret": "s",
        "key": "k",
        "url": "amqp://u:hunter2@h//",
        "error": ConnectionError("cannot reach amqp://u:hunter2@h//"),
        "attempt": 3,
    }
    out = redact_secrets(None, "info", event)
    assert out["password"] == out["token"] == out["secret"] == out["key"] == "***"
    assert out["url"] == "amqp://u:***@h//"
    assert out["error"] == "ConnectionError: cannot reach amqp://u:***@h//"
    assert out["attempt"] == 3
    assert out["event"] == "connecting"
    assert "hunter2" not in repr(out)


# -- configure_logging -----------------------------------------------------------------------


@pytest.mark.usefixtures("logging_state")
def test_json_logging_of_a_library_logger_hides_the_password() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = get_logger("amqptasks.x")
    log.info("hello", url="amqp://u:secret@h//")
    log.debug("not shown at info")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "secret" not in lines[0]
    record = json.loads(lines[0])
    assert record["event"] == "hello"
    assert record["url"] == "amqp://u:***@h//"
    assert record["level"] == "info"
    assert record["logger"] == "amqptasks.x"
    assert "timestamp" in record


@pytest.mark.usefixtures("logging_state")
def test_json_logging_of_application_structlog_and_stdlib_loggers() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    structlog.get_logger("myapp").info("app event", password="hunter2")
    logging.getLogger("myapp.std").warning("plain %s", "message")

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["app event", "plain message"]
    assert records[0]["password"] == "***"
    assert records[1]["level"] == "warning"


@pytest.mark.usefixtures("logging_state")
def test_console_logging_hides_the_password() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    get_logger("amqptasks.x").warning("retrying", url="amqps://u:secret@h/prod")
    output = stream.getvalue()
    assert "retrying" in output
    assert "amqps://u:***@h/prod" in output
    assert "secret" not in output


@pytest.mark.usefixtures("logging_state")
def test_configure_logging_quiets_client_libraries() -> None:
    # Their warnings are about channels amqptasks closes on purpose (mismatch probes),
    # their errors (a failed connection, with a traceback) are reported by amqptasks (#13).
    configure_logging("info", "json", stream=io.StringIO())
    for name in NOISY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.CRITICAL


@pytest.mark.usefixtures("logging_state")
def test_debug_logging_shows_the_client_libraries_but_not_their_frame_dumps() -> None:
    configure_logging("debug", "json", stream=io.StringIO())
    for name in NOISY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO


@pytest.mark.usefixtures("logging_state")
def test_configure_logging_replaces_root_handlers() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    get_logger("amqptasks.x").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


@pytest.mark.usefixtures("logging_state")
def test_unknown_level_is_refused_without_changing_the_set_up() -> None:
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    with pytest.raises(ValueError, match="loud"):
        configure_logging("loud", "json", stream=io.StringIO())
    assert root.handlers == handlers_before


@pytest.mark.usefixtures("logging_state")
def test_library_is_silent_until_configured(capsys: pytest.CaptureFixture[str]) -> None:
    # No handler anywhere up the tree except the library's NullHandler (pytest's own
    # capture handler on the root logger is taken away for this test).
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)

    log = get_logger("amqptasks.transport.x")
    log.error("broker down", url="amqp://u:secret@h//")
    log.warning("still down")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""

    # The check above can see output: a logger outside amqptasks, with no handler,
    # falls back on logging.lastResort and prints to stderr.
    logging.getLogger("not_amqptasks.check").error("visible")
    assert "visible" in capsys.readouterr().err


def test_console_tracebacks_show_no_local_variables() -> None:
    """#13: structlog's rich formatter printed each frame's locals (task arguments)."""
    import io
    import logging as stdlib_logging

    from amqptasks.logging import configure_logging

    stream = io.StringIO()
    configure_logging("DEBUG", "console", stream=stream)

    def run_task(card_number: str) -> None:
        raise ValueError("declined")

    card = "-".join(["4111", "SECRET", "ARG"])  # only a local variable holds it
    try:
        run_task(card)
    except ValueError:
        stdlib_logging.getLogger("amqptasks.worker").exception("uncaught")
    output = stream.getvalue()
    assert "ValueError: declined" in output
    assert "4111-SECRET-ARG" not in output


@pytest.mark.parametrize("password", ["pa55/w#o?r@d", "a b:c%2Fd", "é☃/@@", "x@y", "p#q", "?/?"])
def test_redact_masks_passwords_of_any_characters(password: str) -> None:
    from amqptasks.logging import redact

    text = f"connecting to amqp://user:{password}@rabbit.local:5672/vh failed"
    masked = redact(text)
    assert masked == "connecting to amqp://user:***@rabbit.local:5672/vh failed"
