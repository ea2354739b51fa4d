"""The TLS probes behind connection errors leave no socket behind, whatever the peer does."""

from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks.transport.tls_errors import _speaks_tls

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """A local port whose server resets every connection as soon as it accepts it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: a reset, not a clean close

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


def test_a_peer_that_resets_is_not_taken_for_tls_and_leaves_no_socket_open(
    resetting_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = socket.create_connection

    def connect_then_get_reset(*args: Any, **kwargs: Any) -> socket.socket:
        # The reset arrives before the probe starts TLS on the socket: the case where
        # ``ssl.wrap_socket`` itself raises, after taking the socket over.
        sock = connect(*args, **kwargs)
        time.sleep(0.05)
        return sock

    monkeypatch.setattr(socket, "create_connection", connect_then_get_reset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answers = [_speaks_tls("127.0.0.1", resetting_port) for _ in range(5)]
        gc.collect()
    assert answers == [False] * 5
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
