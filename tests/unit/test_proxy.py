"""The TCP fault proxy against a local echo server (no broker needed)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from amqptasks.testing.proxy import BLACKHOLE, DELAY, PASS, RESET, FaultProxy

if TYPE_CHECKING:
    from collections.abc import Iterator


class EchoServer:
    """Echoes every byte back; counts the connections it saw."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            with contextlib.suppress(OSError):
                while data := conn.recv(65536):
                    conn.sendall(data)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo.port, lifetime=60) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def assert_reset(proxy: FaultProxy) -> None:
    """A new connection is reset (while connecting, or at its first read)."""
    with pytest.raises(ConnectionResetError), connect(proxy) as sock:  # either step may see it
        sock.sendall(b"x")
        sock.recv(10)


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    assert proxy.mode == PASS
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB, many chunks
        sock.sendall(big)
        received = b""
        while len(received) < len(big):
            received += sock.recv(65536)
        assert received == big
        wait_until(lambda: proxy.connections == 1)


def test_reset_kills_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    sock = connect(proxy)
    assert roundtrip(sock) == b"ping"
    proxy.reset()
    assert proxy.mode == RESET
    with pytest.raises(ConnectionResetError):
        sock.sendall(b"x")
        sock.recv(10)
    sock.close()
    assert_reset(proxy)
    proxy.restore()
    with connect(proxy) as fresh:
        assert roundtrip(fresh) == b"ping"


def test_blackhole_is_silent_and_holds_bytes_until_restored(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=0.5) as sock:
        assert roundtrip(sock) == b"ping"
        proxy.blackhole()
        assert proxy.mode == BLACKHOLE
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        # New connections are accepted but nothing answers either.
        with connect(proxy, timeout=0.5) as other:
            other.sendall(b"nobody")
            with pytest.raises(TimeoutError):
                other.recv(10)
        proxy.restore()
        sock.settimeout(5)
        assert sock.recv(10) == b"held"  # nothing was lost, only held


def test_delay_slows_each_direction(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=5) as sock:
        proxy.delay(0.3)
        assert proxy.mode == DELAY
        assert proxy.delay_seconds == 0.3
        started = time.monotonic()
        assert roundtrip(sock) == b"ping"
        assert time.monotonic() - started >= 0.55  # 0.3 s there and 0.3 s back
        proxy.restore()
        started = time.monotonic()
        assert roundtrip(sock) == b"ping"
        assert time.monotonic() - started < 0.3


def test_a_closing_server_closes_the_client_side(echo: EchoServer) -> None:
    with FaultProxy("127.0.0.1", echo.port, lifetime=60) as proxy, connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""  # the EOF went through and came back
        wait_until(lambda: proxy.connections == 0)


def test_unreachable_upstream_resets_the_client() -> None:
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    # The reset may come as soon as the handshake (a busy machine): connect is inside.
    with (
        FaultProxy("127.0.0.1", port, lifetime=60) as proxy,
        pytest.raises((ConnectionResetError, BrokenPipeError)),
        connect(proxy) as sock,
    ):
        sock.sendall(b"x")
        assert sock.recv(10) == b""
        sock.sendall(b"x")


def test_connection_limit(echo: EchoServer) -> None:
    with FaultProxy("127.0.0.1", echo.port, max_connections=1, lifetime=60) as proxy:
        with connect(proxy) as first:
            assert roundtrip(first) == b"ping"
            assert_reset(proxy)
        assert proxy.accepted == 2


def test_lifetime_stops_the_proxy_by_itself(echo: EchoServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port, lifetime=0.5).start()
    sock = connect(proxy)
    assert roundtrip(sock) == b"ping"
    wait_until(lambda: not proxy.running)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        sock.sendall(b"x")
        if not sock.recv(10):
            raise ConnectionResetError
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    proxy.stop()  # idempotent after it stopped itself
    with pytest.raises(RuntimeError):
        proxy.reset()


def test_url_points_at_the_proxy_and_sets_parameters(proxy: FaultProxy) -> None:
    url = proxy.url("amqp://user:p%40ss@broker.example:5672/%2F?name=x", heartbeat=2)
    assert url == f"amqp://user:p%40ss@127.0.0.1:{proxy.port}/%2F?name=x&heartbeat=2"
    assert proxy.url("amqp://h/").startswith(f"amqp://127.0.0.1:{proxy.port}/")
    assert "FaultProxy" in repr(proxy)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 1, max_connections=0)
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 1, lifetime=0)
    with pytest.raises(RuntimeError):
        _ = FaultProxy("127.0.0.1", 1).port
    with FaultProxy("127.0.0.1", 1, lifetime=30) as proxy, pytest.raises(ValueError):
        proxy.delay(-1)
