"""Logging: structlog loggers that stay quiet until the application asks.

The library logs through :func:`get_logger`, whose events go to the standard
``logging`` logger of the same name ("amqptasks.*"). That logger has a
``NullHandler``, so nothing is printed until the application (or the
``amqptasks`` CLI, through :func:`configure_logging`) installs a handler. The
library never configures structlog or the root logger itself.

Every event passes :func:`redact_secrets`, which masks passwords in AMQP URLs
and values of keys that name a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any, Literal

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

# "scheme://": what follows, up to the last "@" before the next URL or line end,
# holds the credentials (a password may hold "/", "?", "#", "@", ":" or spaces).
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# user:password@ without a scheme; the password runs to the last "@" before the host.
_BARE_CREDENTIALS = re.compile(r"(?P<user>[^:/@\s'\"]+):(?P<pw>[^\s/'\"]+)@")
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
)

logging.getLogger("amqptasks").addHandler(logging.NullHandler())


def redact(text: str) -> str:
    """Mask the password of every URL in ``text``, whatever characters it holds.

    After ``scheme://``, everything from the first ``:`` to the last ``@``
    before the next URL (or the end of the line) is masked, as
    :meth:`amqptasks.config.BrokerURL.parse` reads credentials; this may mask
    more than the password, never less.

    >>> redact("amqp://guest:s3cret@host:5672//")
    'amqp://guest:***@host:5672//'
    >>> redact("amqp://guest:pa55/w#o?r@d@host//")
    'amqp://guest:***@host//'
    """
    if "@" not in text:
        return text
    out: list[str] = []
    done = 0
    starts = [match.end() for match in _SCHEME.finditer(text)]
    for index, start in enumerate(starts):
        stop = starts[index + 1] if index + 1 < len(starts) else len(text)
        newline = text.find("\n", start, stop)
        stop = stop if newline < 0 else newline
        at = text.rfind("@", start, stop)
        colon = text.find(":", start, at) if at >= 0 else -1
        if colon >= 0:
            out.append(text[done : colon + 1])
            out.append("***")
            done = at
    out.append(text[done:])
    masked = "".join(out)
    return _BARE_CREDENTIALS.sub(
        lambda m: m[0] if m["pw"] == "***" else f"{m['user']}:***@", masked
    )


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide passwords in URLs and values of secret-named keys."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        # "key" alone is a secret; "routing_key" is not.
        if value and (lowered == "key" or any(part in lowered for part in _SECRET_KEY_PARTS)):
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
        elif isinstance(value, BaseException):
            event_dict[key] = redact(f"{type(value).__name__}: {value}")
    return event_dict


_LIBRARY_PROCESSORS: list[Processor] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    redact_secrets,
    structlog.stdlib.render_to_log_kwargs,
]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return the library logger for module ``name`` (silent until configured)."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_LIBRARY_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger


LogFormat = Literal["console", "json"]

#: What :func:`configure_logging` was last called with (children of the
#: ``processes`` pool repeat it).
_configured: tuple[int, LogFormat] | None = None


def configured() -> tuple[int, LogFormat] | None:
    """``(level, format)`` of the last :func:`configure_logging` call, if any."""
    return _configured


def configure_logging(
    level: str | int = "INFO", log_format: LogFormat = "console", *, stream: Any = None
) -> None:
    """Configure stdlib logging and structlog for a command-line process.

    Used by the ``amqptasks`` CLI; applications embedding amqptasks keep their
    own logging set-up and never need to call it.

    Args:
        level: Level name or number for the ``amqptasks`` logger and task code.
        log_format: ``console`` for humans, ``json`` for one JSON object per line.
        stream: Where to write (default ``sys.stderr``).
    """
    global _configured
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    _configured = (numeric, log_format)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        # structlog's default (rich, when installed) prints each frame's local
        # variables: task arguments and message headers would end up in the log.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if log_format == "json" else _noop,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # pika and aiormq are chatty at INFO about every connection step.
    # pika and aiormq log every channel the broker closes (406 on a mismatch probe,
    # 404 in passive mode) as warnings; amqptasks reports those itself.
    # Below debug level not even their errors: amqptasks turns every pika/aiormq failure
    # into its own one-line error, and pika logs a failed connection with a traceback.
    for noisy in ("pika", "aiormq", "aio_pika"):
        # Even at debug, not their frame dumps (they include message bodies).
        logging.getLogger(noisy).setLevel(
            logging.INFO if numeric <= logging.DEBUG else logging.CRITICAL
        )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _noop(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return event_dict
