"""A TCP fault proxy for tests: cut, black-hole or slow down the link to a broker.

No Docker (and so no toxiproxy) is available where the tests run, so reconnect
tests put this proxy between a client and the broker and change what it does to
the traffic while the client is connected:

- ``pass``: bytes flow both ways as they arrive.
- ``reset``: every open connection is closed with a TCP RST (``SO_LINGER`` 0) on
  both sides, and new connections are reset as soon as they are accepted, until
  :meth:`FaultProxy.restore`. To the client this looks like a crashed broker or a
  dropped NAT entry: reads fail with ``ECONNRESET``.
- ``blackhole``: sockets stay open but nothing is forwarded in either direction,
  and new connections are accepted and then ignored: a *silent peer*. The proxy
  stops reading, so what the peers send waits in the kernel buffers (as in a
  network whose packets are dropped and retransmitted); after :meth:`restore`
  it flows again, unless a peer gave up in the meantime (heartbeat timeout).
- ``delay``: every chunk is forwarded ``seconds`` after it arrived, in order.

The proxy runs an asyncio loop on a daemon thread; its methods may be called from
any thread and return once the change is in effect. It is bounded: at most
``max_connections`` links at once (more are reset), and it stops by itself after
``lifetime`` seconds so a forgotten proxy cannot outlive a test run.

Example:
    >>> with FaultProxy("127.0.0.1", 5672) as proxy:  # doctest: +SKIP
    ...     url = proxy.url("amqp://guest:guest@127.0.0.1:5672/%2F", heartbeat=2)
    ...     proxy.blackhole()
    ...     proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["BLACKHOLE", "DELAY", "PASS", "RESET", "FaultProxy"]

#: Forward everything as it arrives.
PASS: Final = "pass"
#: Reset every connection (RST) and refuse new ones until restored.
RESET: Final = "reset"
#: Keep sockets open, forward nothing: a silent peer.
BLACKHOLE: Final = "blackhole"
#: Forward every chunk after a fixed delay.
DELAY: Final = "delay"

#: Bytes read from a socket at a time.
_CHUNK = 65536
#: Chunks held per direction before the proxy stops reading (back-pressure).
_QUEUE_CHUNKS = 256
#: Seconds a control call waits for the proxy's loop.
_CONTROL_TIMEOUT = 10.0


def _linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the next close of ``writer``'s socket send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _rst(writer: asyncio.StreamWriter) -> None:
    _linger_zero(writer)
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection to the broker."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client = (reader, writer)
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        proxy = self.proxy
        try:
            self.upstream = await asyncio.wait_for(
                asyncio.open_connection(proxy.upstream_host, proxy.upstream_port),
                timeout=proxy.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError):
            _rst(self.client[1])  # the broker is not there: neither are we
            return
        if proxy.mode == RESET:  # reset while we were connecting
            self.reset()
            return
        self.tasks = [
            asyncio.ensure_future(self._direction(self.client[0], self.upstream[1])),
            asyncio.ensure_future(self._direction(self.upstream[0], self.client[1])),
        ]
        try:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in self.tasks:
                task.cancel()
            for _reader, writer in (self.client, self.upstream):
                writer.close()

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``; returns when either side is done."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        sender = asyncio.ensure_future(self._send(chunks, writer))
        pump = asyncio.ensure_future(self._read(reader, chunks))
        try:
            await asyncio.wait({sender, pump}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done() and not pump.cancelled() and pump.result():
                await sender  # a clean EOF: deliver what is queued, then the EOF
        finally:
            sender.cancel()
            pump.cancel()

    async def _read(
        self, reader: asyncio.StreamReader, chunks: asyncio.Queue[tuple[float, bytes]]
    ) -> bool:
        """Queue what ``reader`` gives; True after a clean EOF, False after an error."""
        while True:
            await self.proxy._flowing.wait()  # black-holed: leave it in the kernel
            try:
                data = await reader.read(_CHUNK)
            except OSError:
                return False
            await chunks.put((time.monotonic(), data))
            if not data:
                return True

    async def _send(
        self, chunks: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        proxy = self.proxy
        while True:
            received, data = await chunks.get()
            await proxy._flowing.wait()  # black-holed: hold what was read
            wait = received + proxy.delay_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                await proxy._flowing.wait()
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return

    def reset(self) -> None:
        """RST both sockets now."""
        for task in self.tasks:
            task.cancel()
        _rst(self.client[1])
        if self.upstream is not None:
            _rst(self.upstream[1])


class FaultProxy:
    """A TCP proxy to ``upstream_host:upstream_port`` whose faults tests switch on and off.

    Args:
        upstream_host: Where the real server (the broker) listens.
        upstream_port: Its port.
        host: Where the proxy listens (loopback only by default).
        port: Its port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        max_connections: Links open at once; further connections are reset.
        lifetime: Seconds after which the proxy stops by itself.
        connect_timeout: Seconds to wait for the upstream connection of a new link.

    Example:
        >>> proxy = FaultProxy("127.0.0.1", 5672).start()  # doctest: +SKIP
        >>> proxy.reset(); proxy.restore(); proxy.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 64,
        lifetime: float = 900.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if lifetime <= 0:
            raise ValueError(f"lifetime must be > 0, got {lifetime}")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.max_connections = max_connections
        self.lifetime = lifetime
        self.connect_timeout = connect_timeout
        self._requested_port = port
        self._port = 0
        self._mode = PASS
        self._delay = 0.0
        self._accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event
        self._finish: asyncio.Event
        self._stopped = threading.Event()

    # -- state --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (after :meth:`start`)."""
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def mode(self) -> str:
        """``pass``, ``reset``, ``blackhole`` or ``delay``."""
        return self._mode

    @property
    def delay_seconds(self) -> float:
        """The delay applied to each chunk (0 unless in ``delay`` mode)."""
        return self._delay

    @property
    def connections(self) -> int:
        """Links open now."""
        return len(self._links)

    @property
    def accepted(self) -> int:
        """Connections accepted since the start (reset ones included)."""
        return self._accepted

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (or the end of its lifetime)."""
        return self._thread is not None and not self._stopped.is_set()

    def url(self, broker_url: str, **params: Any) -> str:
        """``broker_url`` pointed at the proxy, with query ``params`` set (``heartbeat=2``)."""
        parts = urlsplit(broker_url)
        userinfo, _, _hostport = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{self.host}:{self.port}"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.update({key: str(value) for key, value in params.items()})
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and forward; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start(), never lost
                failure.append(exc)
                ready.set()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                self._stopped.set()

        self._thread = threading.Thread(target=run, name="amqptasks-fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(_CONTROL_TIMEOUT)
        if failure:
            self._thread.join(_CONTROL_TIMEOUT)
            raise RuntimeError(f"fault proxy did not start: {failure[0]}") from failure[0]
        if not self._port:
            raise RuntimeError("fault proxy did not start in time")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._finish = asyncio.Event()
        self._server = await asyncio.start_server(
            self._accept, self.host, self._requested_port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await asyncio.wait_for(self._finish.wait(), timeout=self.lifetime)
        except asyncio.TimeoutError:
            pass  # lifetime over: stop by ourselves
        finally:
            self._server.close()
            for link in list(self._links):
                link.reset()
            self._links.clear()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        if self._mode == RESET or len(self._links) >= self.max_connections:
            _rst(writer)
            return
        link = _Link(self, reader, writer)
        self._links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            # The proxy is stopping. This task is the top of its link, and asyncio's
            # stream server logs a cancelled client task as an error: end it quietly.
            pass
        finally:
            self._links.discard(link)

    def stop(self) -> None:
        """Reset every link, close the port and end the thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or self._stopped.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
            loop.call_soon_threadsafe(self._finish.set)
        thread.join(_CONTROL_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return (
            f"<FaultProxy {where} -> {self.upstream_host}:{self.upstream_port} "
            f"mode={self._mode} links={len(self._links)}>"
        )

    # -- faults -------------------------------------------------------------------------

    def _control(self, mode: str, delay: float = 0.0) -> None:
        loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("the proxy is not running")

        async def apply() -> None:
            self._mode = mode
            self._delay = delay
            if mode == BLACKHOLE:
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == RESET:
                for link in list(self._links):
                    link.reset()

        asyncio.run_coroutine_threadsafe(apply(), loop).result(_CONTROL_TIMEOUT)

    def restore(self) -> None:
        """Back to ``pass``: forward everything (held bytes of a black hole flow again)."""
        self._control(PASS)

    def reset(self) -> None:
        """RST every open connection and new ones until :meth:`restore`."""
        self._control(RESET)

    def blackhole(self) -> None:
        """Forward nothing, close nothing, until :meth:`restore`."""
        self._control(BLACKHOLE)

    def delay(self, seconds: float) -> None:
        """Forward each chunk ``seconds`` after it arrived (until :meth:`restore`)."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        self._control(DELAY, float(seconds))
