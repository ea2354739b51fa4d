"""Where the ``rabbitmq-node`` script is, what it writes, and waiting for a node's AMQP port."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from amqptasks.logging import redact

#: Environment variable that, when set, overrides the location of ``rabbitmq-node``.
SCRIPT_ENV_VAR = "AMQPTASKS_RABBITMQ_NODE_SCRIPT"

_SCRIPT_NAME = "rabbitmq-node"


def repo_script_path() -> Path:
    """Return where the script lives in a source checkout (it may not exist).

    Returns:
        ``<repo>/deploy/local/rabbitmq-node``.
    """
    return Path(__file__).resolve().parents[2] / "deploy" / "local" / _SCRIPT_NAME


def packaged_script_path() -> Path:
    """Return where the copy shipped as package data lives (it may not exist).

    Returns:
        ``amqptasks/testing/rabbitmq-node`` next to this module.
    """
    return Path(__file__).resolve().with_name(_SCRIPT_NAME)


def find_script() -> Path:
    """Locate the ``rabbitmq-node`` script.

    The order is: ``$AMQPTASKS_RABBITMQ_NODE_SCRIPT``, the repository copy, then the
    packaged copy.

    Returns:
        Path to the script.

    Raises:
        FileNotFoundError: If no copy of the script can be found.
    """
    override = os.environ.get(SCRIPT_ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{SCRIPT_ENV_VAR}={override} does not exist")
        return path
    for candidate in (repo_script_path(), packaged_script_path()):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{_SCRIPT_NAME} not found at {repo_script_path()} or {packaged_script_path()}"
    )


def wait_for_amqp(url: str, timeout: float = 30.0) -> None:
    """Wait until an AMQP 0-9-1 handshake with ``url`` succeeds.

    Args:
        url: AMQP URL, e.g. ``amqp://guest:guest@127.0.0.1:5672/%2F``.
        timeout: Seconds to keep retrying.

    Raises:
        TimeoutError: If no handshake succeeded within ``timeout`` (the last connection
            error is chained).
    """
    import pika  # local import: only needed when a broker is actually used

    # pika logs every failed attempt at ERROR level; while polling that is just noise.
    pika_logger = logging.getLogger("pika")
    saved_level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    try:
        while True:
            try:
                params = pika.URLParameters(url)
                params.socket_timeout = 5
                params.blocked_connection_timeout = 5
                connection = pika.BlockingConnection(params)
            except Exception as exc:  # pika raises a zoo of AMQPConnectionError subclasses
                last_error = exc
            else:
                connection.close()
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no AMQP handshake with {redact(url)} within {timeout:.0f}s: {last_error!r}"
                ) from last_error
            time.sleep(0.5)
    finally:
        pika_logger.setLevel(saved_level)


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse the simple ``KEY=VALUE`` lines written by the script into a dict."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env
