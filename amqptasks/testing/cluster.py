"""Start and stop a private local RabbitMQ cluster for tests and demos.

:class:`RabbitCluster` drives the ``rabbitmq-cluster`` script (``deploy/local`` in the
repository, a copy ships in this package), which starts ``rabbitmq-node`` nodes with the
cluster's own Erlang cookie and joins them; each member is then a :class:`RabbitNode`,
so a test can kill, freeze, stop and start one node while the others serve.

Example:
    >>> with RabbitCluster(nodes=3) as cluster:  # doctest: +SKIP
    ...     print(cluster.broker_url)
    amqp://guest:guest@127.0.0.1:40123/%2F;amqp://guest:guest@127.0.0.1:40127/%2F;...
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from amqptasks.testing._script import CLUSTER_SCRIPT_NAME, find_script, parse_env_file
from amqptasks.testing.node import BROKERS, RabbitNode

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RabbitCluster"]


class RabbitCluster:
    """A private cluster of RabbitMQ nodes whose files all live under one directory.

    Node ``i`` lives in ``base_dir/n<i>``; see ``rabbitmq-cluster --help``.

    Args:
        base_dir: Directory for the cluster. ``None`` creates a temporary directory,
            which :meth:`stop` then deletes; a given directory is never deleted.
        nodes: How many nodes.
        extra_conf: Extra ``rabbitmq.conf`` lines for every node.
        start_timeout: Seconds each node may take to boot.
        broker: ``"system"`` or ``"4"``, as :class:`RabbitNode`.

    Attributes:
        nodes: The members (after :meth:`start`), node 1 first.
    """

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        nodes: int = 3,
        extra_conf: str = "",
        start_timeout: float = 120.0,
        broker: str = "system",
    ) -> None:
        if broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, got {broker!r}")
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self.size = nodes
        self.broker = broker
        self.extra_conf = extra_conf
        self.start_timeout = start_timeout
        self._owns_dir = base_dir is None
        self._base_dir = None if base_dir is None else Path(base_dir).resolve()
        self.nodes: list[RabbitNode] = []
        self.env: dict[str, str] = {}

    @property
    def base_dir(self) -> Path:
        """Directory of the cluster (created by :meth:`start` if it was not given)."""
        if self._base_dir is None:
            raise RuntimeError("RabbitCluster has no directory yet; call start() first")
        return self._base_dir

    @property
    def broker_url(self) -> str:
        """Every node's AMQP URL, ``;``-separated (what ``broker_url`` takes)."""
        if not self.env:
            raise RuntimeError("RabbitCluster not started")
        return self.env["BROKER_URL"]

    @property
    def amqp_urls(self) -> list[str]:
        """The nodes' AMQP URLs, node 1 first."""
        return self.broker_url.split(";")

    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(find_script(CLUSTER_SCRIPT_NAME)), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "RABBITMQ_NODE_START_TIMEOUT": str(int(self.start_timeout))},
            check=False,
        )

    def start(self) -> RabbitCluster:
        """Start (or restart) every node, form the cluster and wait until all run in it.

        Raises:
            RuntimeError: a node failed to start or join (with the script's output).
        """
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="amqptasks-cluster-", dir="/tmp"))
        self._base_dir.mkdir(parents=True, exist_ok=True)
        args = ["start", "--dir", str(self._base_dir), "--nodes", str(self.size)]
        args += ["--broker", self.broker]
        if self.extra_conf.strip():
            conf = self._base_dir / "extra.conf"
            conf.write_text(self.extra_conf.rstrip("\n") + "\n")
            args += ["--conf", str(conf)]
        build_allowance = 600 if self.broker == "4" else 0
        try:
            proc = self._script(*args, timeout=3 * self.start_timeout + 120 + build_allowance)
        except subprocess.TimeoutExpired as exc:
            self._stop_quietly()
            raise RuntimeError(f"rabbitmq-cluster start timed out in {self._base_dir}") from exc
        if proc.returncode != 0:
            self._stop_quietly()
            raise RuntimeError(
                f"rabbitmq-cluster start failed (exit {proc.returncode}) in {self._base_dir}:\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}".rstrip()
            )
        self.env = parse_env_file(self._base_dir / "cluster.env")
        self.env = {key: value.strip('"') for key, value in self.env.items()}
        self.nodes = [
            RabbitNode.attach(
                directory, extra_conf=self.extra_conf, start_timeout=self.start_timeout
            )
            for directory in self.env["NODE_DIRS"].split()
        ]
        return self

    def _stop_quietly(self) -> None:
        if self._base_dir is not None and (self._base_dir / "cluster.env").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._script("stop", "--dir", str(self._base_dir), timeout=180)

    def stop(self) -> None:
        """Stop every node (idempotent); a temporary directory is deleted afterwards.

        Raises:
            RuntimeError: the script failed to stop a node.
        """
        if self._base_dir is None or not (self._base_dir / "cluster.env").exists():
            return
        for node in self.nodes:  # a frozen node would not stop
            with contextlib.suppress(RuntimeError, OSError):
                node.signal(18)  # SIGCONT
        proc = self._script("stop", "--dir", str(self._base_dir), timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmq-cluster stop failed: {proc.stderr.strip()}")
        if self._owns_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
            self.env = {}
            self.nodes = []

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------- inspection

    def running(self) -> list[RabbitNode]:
        """The members whose VM runs (a frozen one included)."""
        alive = []
        for node in self.nodes:
            with contextlib.suppress(RuntimeError):
                node.pid()
                alive.append(node)
        return alive

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl ARGS`` on the first member that answers.

        Raises:
            RuntimeError: no member answered.
        """
        errors = []
        for node in self.running():
            try:
                return node.ctl(*args, timeout=timeout)
            except RuntimeError as exc:
                errors.append(str(exc))
        raise RuntimeError("no cluster member answered: " + "; ".join(errors or ["none runs"]))

    def node_named(self, name: str) -> RabbitNode:
        """The member with Erlang node name ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no member named {name!r}")

    def node_on_port(self, port: int) -> RabbitNode:
        """The member listening for AMQP on ``port``."""
        for node in self.nodes:
            if node.amqp_port == port:
                return node
        raise KeyError(f"no member listens on port {port}")

    def queue_leader(self, queue: str, vhost: str = "/") -> RabbitNode:
        """The member leading quorum queue ``queue``.

        Raises:
            KeyError: no such quorum queue, or it has no leader right now.
        """
        out = self.ctl("list_queues", "-q", "-p", vhost, "--formatter", "json", "name", "leader")
        for row in json.loads(out) if out.strip() else []:
            if row.get("name") == queue and row.get("leader"):
                with contextlib.suppress(KeyError):
                    return self.node_named(str(row["leader"]))
        raise KeyError(f"no leader found for quorum queue {queue!r}")

    def queue_depths(self, vhost: str = "/") -> dict[str, tuple[int, int]]:
        """``(messages_ready, messages_unacknowledged)`` of each queue, as a member sees it."""
        errors = []
        for node in self.running():
            try:
                return node.queue_depths(vhost)
            except RuntimeError as exc:
                errors.append(str(exc))
        raise RuntimeError("no cluster member answered: " + "; ".join(errors or ["none runs"]))
