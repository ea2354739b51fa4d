"""Start and stop a private RabbitMQ node for tests and demos.

The heavy lifting is done by the ``rabbitmq-node`` shell script (single source of truth:
``deploy/local/rabbitmq-node`` in the repository; an identical copy ships inside this
package for installed use).  :class:`RabbitNode` drives that script and adds a few
``rabbitmqctl`` helpers that integration tests need.

Example:
    >>> with RabbitNode() as node:  # doctest: +SKIP
    ...     print(node.amqp_url)
    amqp://guest:guest@127.0.0.1:40123/%2F
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from amqptasks.testing._script import (
    SCRIPT_ENV_VAR,
    find_script,
    packaged_script_path,
    parse_env_file,
    repo_script_path,
    wait_for_amqp,
)

if TYPE_CHECKING:
    from types import TracebackType

#: What ``broker=`` accepts: the machine's RabbitMQ, or RabbitMQ 4.x in a chroot.
BROKERS: tuple[str, ...] = ("system", "4")

__all__ = [
    "BROKERS",
    "SCRIPT_ENV_VAR",
    "RabbitNode",
    "find_script",
    "packaged_script_path",
    "repo_script_path",
    "wait_for_amqp",
]


class RabbitNode:
    """A private RabbitMQ node whose config, data and logs live under one directory.

    The node listens on 127.0.0.1 only, on free ports picked at start, and uses the
    default ``guest``/``guest`` user (loopback-only, which is fine for 127.0.0.1).
    Nothing else on the machine (in particular the system ``rabbit@host`` node) is
    touched.

    Attributes are available after :meth:`start`:

    Attributes:
        base_dir: Directory holding ``node.env``, ``rabbitmq.conf``, data and logs.
        name: Erlang node name, e.g. ``amqptasks-1a2b3c4d@localhost``.
        amqp_port: AMQP 0-9-1 port on 127.0.0.1.
        mgmt_port: Management HTTP API port on 127.0.0.1.
        amqp_url: ``amqp://guest:guest@127.0.0.1:<amqp_port>/%2F``.
        mgmt_url: ``http://127.0.0.1:<mgmt_port>``.
        env: Everything from ``node.env``.

    Args:
        base_dir: Directory for the node.  ``None`` creates a temporary directory,
            which :meth:`stop` then deletes; a given directory is never deleted.
        name: Erlang node name (``@localhost`` is appended when no host is given).
            Default: random, or the name previously used in ``base_dir``.
        extra_conf: Extra ``rabbitmq.conf`` lines, e.g. ``"consumer_timeout = 60000"``.
        start_timeout: Seconds to wait for the broker to boot.
        broker: ``"system"`` for the machine's RabbitMQ, ``"4"`` for RabbitMQ 4.x from a
            Debian trixie root filesystem under ``chroot`` (built once, needs root;
            its deprecated features are denied as RabbitMQ 4.3 denies them).
        tls_dir: A directory holding ``ca.pem``, ``server.pem`` and ``server.key``
            (:func:`amqptasks.testing.certs.make_certificates` writes them): the node
            then also listens for TLS on :attr:`tls_port` (:attr:`amqps_url`), requires
            client certificates signed by ``ca.pem``, and offers the EXTERNAL login
            (the user is the client certificate's common name).
    """

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        name: str | None = None,
        extra_conf: str = "",
        start_timeout: float = 120.0,
        broker: str = "system",
        tls_dir: str | Path | None = None,
    ) -> None:
        if broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, got {broker!r}")
        self.broker = broker
        self._owns_dir = base_dir is None
        self._base_dir: Path | None = None if base_dir is None else Path(base_dir).resolve()
        if name is not None and "@" not in name:
            name = f"{name}@localhost"
        self._requested_name = name
        self.extra_conf = extra_conf
        self.tls_dir = None if tls_dir is None else Path(tls_dir).resolve()
        self.start_timeout = start_timeout
        self.env: dict[str, str] = {}
        self._started = False

    @classmethod
    def attach(
        cls, base_dir: str | Path, *, extra_conf: str = "", start_timeout: float = 120.0
    ) -> RabbitNode:
        """A node the script started in ``base_dir`` (say, a cluster member), to control.

        The directory is never deleted by :meth:`stop`; :meth:`start` brings the node
        back with its name, ports and data (and ``extra_conf``, which it was started with).

        Raises:
            FileNotFoundError: ``base_dir`` has no ``node.env``.
        """
        env = parse_env_file(Path(base_dir) / "node.env")
        node = cls(
            base_dir,
            extra_conf=extra_conf,
            start_timeout=start_timeout,
            broker=env.get("BROKER") or "system",
        )
        node.env = env
        node._started = True
        return node

    # ------------------------------------------------------------------ properties

    @property
    def base_dir(self) -> Path:
        """Directory of the node (created by :meth:`start` if it was not given)."""
        if self._base_dir is None:
            raise RuntimeError("RabbitNode has no directory yet; call start() first")
        return self._base_dir

    def _require(self, key: str) -> str:
        try:
            return self.env[key]
        except KeyError:
            raise RuntimeError(f"RabbitNode not started (no {key} known)") from None

    @property
    def name(self) -> str:
        """Erlang node name."""
        if not self.env and self._requested_name is not None:
            return self._requested_name
        return self._require("RABBITMQ_NODENAME")

    @property
    def amqp_port(self) -> int:
        """AMQP port on 127.0.0.1."""
        return int(self._require("AMQP_PORT"))

    @property
    def mgmt_port(self) -> int:
        """Management HTTP port on 127.0.0.1."""
        return int(self._require("MGMT_PORT"))

    @property
    def amqp_url(self) -> str:
        """AMQP URL for the default vhost, as guest."""
        return self._require("AMQP_URL")

    @property
    def tls_port(self) -> int:
        """TLS (amqps) port on 127.0.0.1, for a node started with ``tls_dir``."""
        return int(self._require("TLS_PORT"))

    @property
    def amqps_url(self) -> str:
        """``amqps://guest:guest@localhost:<tls_port>/%2F``, for a node started with ``tls_dir``."""
        return self._require("AMQPS_URL")

    @property
    def mgmt_url(self) -> str:
        """Base URL of the management HTTP API."""
        return self._require("MGMT_URL")

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` has not been called since."""
        return self._started

    # ------------------------------------------------------------------- lifecycle

    def _run_script(
        self, *args: str, timeout: float, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        # Run through bash: the packaged copy may have lost its executable bit.
        return subprocess.run(
            ["bash", str(find_script()), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def start(self) -> RabbitNode:
        """Start the node and wait until RabbitMQ has fully booted.

        Returns:
            ``self``, for chaining.

        Raises:
            RuntimeError: If the node fails to start; the message carries the script's
                output including the tail of the node's logs.
        """
        if self._started:
            raise RuntimeError(f"node {self.name} already started")
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="amqptasks-rabbit-", dir="/tmp"))
        self._base_dir.mkdir(parents=True, exist_ok=True)

        args = ["start", "--dir", str(self._base_dir), "--broker", self.broker]
        if self._requested_name:
            args += ["--name", self._requested_name]
        if self.env:
            # Started before (then stopped or killed): the same ports, or fail loudly,
            # so URLs handed out earlier stay valid.
            args += ["--port", str(self.amqp_port), "--mgmt-port", str(self.mgmt_port)]
            if self.env.get("DIST_PORT"):
                args += ["--dist-port", self.env["DIST_PORT"]]
            if self.env.get("TLS_PORT") and self.tls_dir is not None:
                args += ["--tls-port", self.env["TLS_PORT"]]
        if self.tls_dir is not None:
            args += ["--tls", str(self.tls_dir)]
        if self.extra_conf.strip():
            conf = self._base_dir / "extra.conf"
            conf.write_text(self.extra_conf.rstrip("\n") + "\n")
            args += ["--conf", str(conf)]

        # Building the RabbitMQ 4 root filesystem the first time takes a minute or two.
        boot_timeout = max(10, int(self.start_timeout))
        build_allowance = 600 if self.broker == "4" else 0
        try:
            proc = self._run_script(
                *args,
                timeout=boot_timeout + 60 + build_allowance,
                extra_env={"RABBITMQ_NODE_START_TIMEOUT": str(boot_timeout)},
            )
        except subprocess.TimeoutExpired as exc:
            self._cleanup_failed_start()
            raise RuntimeError(
                f"rabbitmq-node start timed out after {exc.timeout:.0f}s "
                f"(logs under {self._base_dir}/log)"
            ) from exc
        if proc.returncode != 0:
            self._cleanup_failed_start()
            raise RuntimeError(
                f"rabbitmq-node start failed (exit {proc.returncode}) in {self._base_dir}:\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}".rstrip()
            )
        self.env = parse_env_file(self._base_dir / "node.env")
        self._started = True
        return self

    def _cleanup_failed_start(self) -> None:
        """Best effort: make sure a half-started node does not linger."""
        if self._base_dir is not None and (self._base_dir / "node.env").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run_script("stop", "--dir", str(self._base_dir), timeout=120)

    def stop(self) -> None:
        """Stop the node (idempotent).

        A temporary directory created by :meth:`start` is deleted afterwards; a
        directory passed by the caller is kept.

        Raises:
            RuntimeError: If the script fails to stop the node.
        """
        if self._base_dir is None or not (self._base_dir / "node.env").exists():
            self._started = False
            return
        try:
            proc = self._run_script("stop", "--dir", str(self._base_dir), timeout=150)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"rabbitmq-node stop timed out for {self._base_dir}") from exc
        if proc.returncode != 0:
            raise RuntimeError(
                f"rabbitmq-node stop failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        self._started = False
        if self._owns_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
            self.env = {}  # a new directory next time: new ports too

    def __enter__(self) -> RabbitNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "started" if self._started else "stopped"
        url = self.env.get("AMQP_URL", "?")
        return f"<RabbitNode {self.env.get('RABBITMQ_NODENAME', '?')} {url} {state}>"

    # --------------------------------------------------------------- rabbitmqctl

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <name> ARGS...`` against this node.

        Args:
            *args: rabbitmqctl arguments, e.g. ``"list_queues", "-q"``.
            timeout: Seconds before the command is killed.

        Returns:
            The command's stdout.

        Raises:
            RuntimeError: If the command fails or times out (message includes stderr).
        """
        rabbitmqctl = self.env.get("RABBITMQCTL") or shutil.which("rabbitmqctl") or "rabbitmqctl"
        cmd = [rabbitmqctl, "-n", self.name, *args]
        env = None
        if self.env.get("NODE_HOME"):  # the HOME, and so the Erlang cookie, of the node
            env = {**os.environ, "HOME": self.env["NODE_HOME"]}
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def serve_certificate(self, certificate: str | Path, key: str | Path) -> None:
        """Make the TLS listener present ``certificate`` (with ``key``) to new connections.

        The files replace the node's ``server.pem`` and ``server.key`` and Erlang's
        PEM cache is cleared, as RabbitMQ's certificate rotation does: no restart.
        """
        tls = self.base_dir / "tls"
        if not (tls / "server.pem").exists():
            raise RuntimeError(f"node {self.name} was not started with tls_dir")
        shutil.copyfile(certificate, tls / "server.pem")
        shutil.copyfile(key, tls / "server.key")
        self.ctl("eval", "ssl:clear_pem_cache().")

    def stop_app(self) -> None:
        """Stop the RabbitMQ application, keeping the Erlang VM running.

        Clients are disconnected and the AMQP listener goes away until
        :meth:`start_app`.
        """
        self.ctl("stop_app", timeout=120)

    def start_app(self) -> None:
        """Start the RabbitMQ application again and wait until it has booted."""
        self.ctl("start_app", timeout=self.start_timeout)
        self.ctl(
            "await_startup",
            "--timeout",
            str(int(self.start_timeout)),
            timeout=self.start_timeout + 10,
        )

    # ------------------------------------------------------------------ process

    def pid(self) -> int:
        """The OS process id of the node's Erlang VM.

        Raises:
            RuntimeError: If the node is not running (or its pid file names another
                process).
        """
        pid_file = Path(self._require("PID_FILE"))
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            raise RuntimeError(f"node {self.name} has no readable pid file {pid_file}") from None
        if not self._is_our_vm(pid):
            raise RuntimeError(f"node {self.name} is not running (pid {pid} is not its VM)")
        return pid

    def _is_our_vm(self, pid: int) -> bool:
        """True if ``pid`` is alive, not a zombie, and is this node's VM (not a recycled pid)."""
        proc = Path(f"/proc/{pid}")
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            return False
        state = stat.rpartition(")")[2].split()[:1]
        return state != ["Z"] and f"RABBITMQ_NODENAME={self.name}".encode() in environ

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the node's VM, e.g. ``SIGSTOP``/``SIGCONT`` to freeze it.

        A frozen node keeps its sockets open but answers nothing: a silent peer.
        """
        os.kill(self.pid(), signum)

    def kill(self, timeout: float = 30.0) -> None:
        """Kill the node's VM with SIGKILL, as a crash or the OOM killer would.

        Nothing is flushed or closed cleanly; the node directory (data, logs, ports)
        is kept, so :meth:`start` brings the same node back on the same ports with
        its durable queues and persistent messages.

        Raises:
            RuntimeError: If the VM is still alive after ``timeout`` seconds.
        """
        pid = self.pid()
        os.kill(pid, signal.SIGCONT)  # a frozen VM dies as well, but say it plainly
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self._is_our_vm(pid):
            if time.monotonic() >= deadline:
                raise RuntimeError(f"node {self.name} (pid {pid}) survived SIGKILL")
            time.sleep(0.05)
        # epmd forgets the name when the VM's connection to it drops; start() refuses
        # a name that is still registered.
        short = self.name.partition("@")[0]
        epmd = shutil.which("epmd")
        while epmd is not None and time.monotonic() < deadline:
            names = subprocess.run(
                [epmd, "-names"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            if f"name {short} at port " not in names:
                break
            time.sleep(0.1)
        self._started = False

    def add_user(
        self,
        user: str,
        password: str,
        *,
        configure: str = ".*",
        write: str = ".*",
        read: str = ".*",
        vhost: str = "/",
    ) -> None:
        """Create a user and grant it permissions on ``vhost``.

        Args:
            user: User name.
            password: Password.
            configure: Configure permission regex.
            write: Write permission regex.
            read: Read permission regex.
            vhost: Virtual host to grant permissions on.
        """
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, configure, write, read)

    def queue_depths(self, vhost: str = "/") -> dict[str, tuple[int, int]]:
        """Return message counts of all queues in ``vhost``.

        Args:
            vhost: Virtual host to list.

        Returns:
            Mapping of queue name to ``(messages_ready, messages_unacknowledged)``.
        """
        out = self.ctl(
            "list_queues",
            "-q",
            "-p",
            vhost,
            "--formatter",
            "json",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        )
        rows = json.loads(out) if out.strip() else []
        return {
            str(row["name"]): (
                int(row["messages_ready"] or 0),
                int(row["messages_unacknowledged"] or 0),
            )
            for row in rows
        }
