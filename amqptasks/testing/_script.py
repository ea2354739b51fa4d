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
#: The cluster script, which drives ``rabbitmq-node`` (the copy next to it).
CLUSTER_SCRIPT_NAME = "rabbitmq-cluster"


def repo_script_path(name: str = _SCRIPT_NAME) -> Path:
    """Return where script ``name`` lives in a source checkout (it may not exist).

    Returns:
        ``<repo>/deploy/local/<name>``.
    """
    return Path(__file__).resolve().parents[2] / "deploy" / "local" / name


def packaged_script_path(name: str = _SCRIPT_NAME) -> Path:
    """Return where the copy of script ``name`` shipped as package data lives (it may not exist).

    Returns:
        ``amqptasks/testing/<name>`` next to this module.
    """
    return Path(__file__).resolve().with_name(name)


def find_script(name: str = _SCRIPT_NAME) -> Path:
    """Locate the ``rabbitmq-node`` script (or the ``rabbitmq-cluster`` one).

    The order is: ``$AMQPTASKS_RABBITMQ_NODE_SCRIPT`` (``rabbitmq-node`` only), the
    repository copy, then the packaged copy.

    Returns:
        Path to the script.

    Raises:
        FileNotFoundError: If no copy of the script can be found.
    """
    override = os.environ.get(SCRIPT_ENV_VAR) if name == _SCRIPT_NAME else None
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{SCRIPT_ENV_VAR}={override} does not exist")
        return path
    for candidate in (repo_script_path(name), packaged_script_path(name)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{name} not found at {repo_script_path(name)} or {packaged_script_path(name)}"
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
