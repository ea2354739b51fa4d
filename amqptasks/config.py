"""Settings and the broker URL, validated early with errors that say what to fix.

Where a setting comes from, lowest priority first:

1. built-in defaults;
2. ``App(name, broker_url=..., **settings)`` and ``app.config_from_object(obj)``;
3. environment variables ``AMQPTASKS_<NAME>`` (e.g. ``AMQPTASKS_BROKER_URL``),
   so an operator can repoint a deployed app without editing its code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from amqptasks import constants
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

ENV_PREFIX = "AMQPTASKS_"

_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "pyamqp": 5672}


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or math.isinf(number):  # "not >" also refuses NaN
        raise ValueError(f"must be > 0, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return number


#: URL query parameters: name -> (parser, default). ``?heartbeat=10&connect_timeout=3``.
URL_PARAMETERS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "heartbeat": (_non_negative_int, constants.DEFAULT_HEARTBEAT),
    "connect_timeout": (_positive_float, constants.DEFAULT_CONNECT_TIMEOUT),
    "name": (str, ""),
}


def _without_credentials(text: str) -> str:
    """Text that is not a URL, shown without anything up to its last ``@``."""
    _before, at, after = text.rpartition("@")
    return f"***@{after}" if at else text


@dataclass(frozen=True)
class BrokerURL:
    """A parsed AMQP URL: ``amqp://user:password@host:port/vhost?heartbeat=30``.

    ``//`` as path (Celery's spelling) and ``/%2F`` both mean the vhost ``/``.
    ``str()`` and ``repr()`` mask the password.
    """

    scheme: str
    host: str
    port: int
    vhost: str
    username: str
    password: str = field(repr=False)
    heartbeat: int = constants.DEFAULT_HEARTBEAT
    connect_timeout: float = constants.DEFAULT_CONNECT_TIMEOUT
    name: str = ""

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        """Parse and validate ``url``.

        The credentials end at the *last* ``@`` of the URL, so a password holding
        ``/``, ``?``, ``#``, ``@`` or ``:`` unencoded still parses (and is never
        taken for a host, port or vhost that an error would show); an ``@`` in
        the vhost or query must then be written ``%40``.

        Raises:
            ConfigError: naming the part that is wrong (no part of the password
                is ever echoed).
        """
        if not isinstance(url, str):
            raise ConfigError(f"broker URL must be a string, got {type(url).__name__}")
        scheme_end = url.find("://")
        if scheme_end < 0:
            raise ConfigError(
                f"broker URL {_without_credentials(url)!r} has no scheme: expected "
                f"a URL such as amqp://localhost:5672//"
            )
        scheme = url[:scheme_end].lower()
        rest = url[scheme_end + 3 :]
        userinfo, at, location = rest.rpartition("@")
        username, _colon, password = userinfo.partition(":")
        shown = f"{url[:scheme_end]}://" + (f"{username}:***@" if at else "") + location
        if scheme not in _DEFAULT_PORTS:
            raise ConfigError(
                f"broker URL {shown!r}: scheme must be amqp:// or amqps://, "
                f"got {url[:scheme_end][:20]!r}"
            )
        try:  # only the part after the credentials: its errors cannot echo them
            parts = urlsplit(f"{scheme}://{location}")
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker URL {shown!r} is not a valid URL: {exc}") from None
        if not parts.hostname:
            raise ConfigError(f"broker URL {shown!r} has no host")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        vhost = unquote(path) if path else "/"
        params: dict[str, Any] = {}
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            if key not in URL_PARAMETERS:
                known = ", ".join(sorted(URL_PARAMETERS))
                raise ConfigError(
                    f"broker URL {shown!r}: unknown parameter {key!r} (known: {known})"
                )
            parser, _default = URL_PARAMETERS[key]
            try:
                params[key] = parser(raw)
            except ValueError as exc:
                raise ConfigError(f"broker URL {shown!r}: parameter {key}: {exc}") from None
        return cls(
            scheme="amqps" if scheme == "amqps" else "amqp",
            host=parts.hostname,
            port=port or _DEFAULT_PORTS[scheme],
            vhost=vhost,
            username=unquote(username) if username else "guest",
            password=unquote(password) if password else "guest",
            **params,
        )

    @property
    def ssl(self) -> bool:
        """True for ``amqps://``."""
        return self.scheme == "amqps"

    def connection_name(self, role: str) -> str:
        """The name shown in the management UI: ``?name=`` from the URL, then ``role``."""
        return f"{self.name}: {role}" if self.name else role

    def redacted(self) -> str:
        """The URL with the password masked, for messages and logs."""
        vhost = "/" + ("" if self.vhost == "/" else self.vhost)
        return f"{self.scheme}://{self.username}:***@{self.host}:{self.port}{vhost}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"BrokerURL({self.redacted()!r})"


def _parse_str_tuple(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _optional_str(value: str) -> str | None:
    return value or None


def _optional_int(value: str) -> int | None:
    return int(value) if value else None


def _optional_float(value: str) -> float | None:
    return float(value) if value else None


#: Values of ``worker_pool``.
WORKER_POOLS = ("threads", "processes", "asyncio", "solo")


@dataclass(frozen=True)
class Settings:
    """Every App setting, with its default. See docs/configuration.md."""

    broker_url: str = field(default=constants.DEFAULT_BROKER_URL, repr=False)
    #: Queue for tasks that name none.
    default_queue: str = constants.DEFAULT_QUEUE
    task_serializer: str = constants.DEFAULT_SERIALIZER
    result_serializer: str = constants.DEFAULT_SERIALIZER
    #: Content types a worker accepts; pickle is refused unless named here.
    accept_content: tuple[str, ...] = ("json", "msgpack", "yaml")
    task_compression: str | None = None
    task_ignore_result: bool = False
    task_acks_early: bool = False
    task_track_started: bool = False
    #: Seconds a publish waits for the broker's confirm.
    publish_timeout: float = constants.DEFAULT_PUBLISH_TIMEOUT
    #: Seconds an unused reply queue lives on the broker.
    result_expires: float = constants.DEFAULT_RESULT_EXPIRES
    #: Exchange for queues with no ``exchange=`` ("" = the AMQP default exchange).
    default_exchange: str = ""
    #: ``classic`` or ``quorum``, for queues that do not say.
    default_queue_type: str = "classic"
    #: ``declare`` (create what is missing, report mismatches), ``passive``
    #: (only check that it exists) or ``off``.
    topology_mode: str = "declare"
    #: Management API base URL (``http://host:15672``), for live arguments in
    #: mismatch reports and ``topology diff``; default: the broker host, port 15672.
    management_url: str | None = None
    #: Prefix of the shared delay exchanges and queues.
    delay_prefix: str = "amqptasks.delay"
    #: ``classic`` or ``quorum`` (at-least-once dead-lettering) delay queues.
    delay_queue_type: str = "classic"
    #: Retry publishing after a connection loss (``apply_async(retry=)`` overrides).
    publish_retry: bool = True
    #: Times a failed publish is tried again before the error is raised.
    publish_retry_max_retries: int = 3
    #: Seconds before the first retry, added per retry, and the cap (as Celery's).
    publish_retry_interval_start: float = 0.0
    publish_retry_interval_step: float = 0.2
    publish_retry_interval_max: float = 0.2
    #: Retries of a task that asks for them (``max_retries`` task option overrides).
    task_max_retries: int | None = 3
    #: Seconds before a retry when neither ``countdown`` nor backoff says.
    task_default_retry_delay: float = 180.0
    #: Dead-letter a task that failed without (further) retries, besides reporting FAILURE.
    task_dead_letter_failures: bool = True
    #: Classic queues: deliveries of a message (crashed workers) before it is dead-lettered.
    worker_max_deliveries: int = 5
    #: The app's queues (:class:`~amqptasks.topology.model.Queue`); code only.
    queues: tuple[Any, ...] = ()
    #: Task routes (see :mod:`amqptasks.routing`); code only.
    routes: Any = None
    #: ``threads``, ``processes``, ``asyncio`` or ``solo`` (see docs/worker.md#pools).
    worker_pool: str = "threads"
    worker_concurrency: int | None = None
    #: Budget of unacked deliveries = concurrency x this, shared by all consumed queues.
    worker_prefetch_multiplier: int = constants.DEFAULT_PREFETCH_MULTIPLIER
    worker_shutdown_timeout: float = constants.DEFAULT_SHUTDOWN_TIMEOUT
    #: Worker processes started by ``amqptasks worker`` (``--workers``), each with its own
    #: connection, event loop and pool; above 1 the command supervises them.
    worker_processes: int = 1
    #: ``processes`` pool: replace a child after this many tasks (None: never).
    worker_max_tasks_per_child: int | None = None
    #: ``processes`` pool: replace a child whose resident memory passed this many KiB.
    worker_max_memory_per_child: int | None = None
    #: Default hard time limit of every task, in seconds (None: none).
    task_time_limit: float | None = None
    #: Default soft time limit of every task, in seconds (None: none).
    task_soft_time_limit: float | None = None
    #: The broker's ``consumer_timeout`` in seconds, when the management API cannot
    #: tell (0: the broker has none). Only used to warn about longer time limits.
    broker_consumer_timeout: float = constants.DEFAULT_BROKER_CONSUMER_TIMEOUT
    #: Largest message body (bytes, as sent) a worker accepts and a producer sends;
    #: larger deliveries are dead-lettered ``too-large`` (see docs/worker.md#size-limits).
    max_message_size: int = constants.DEFAULT_MAX_MESSAGE_SIZE
    #: Largest body (bytes) a compressed message may inflate to, in a worker and
    #: before compression in a producer.
    max_inflated_size: int = constants.DEFAULT_MAX_INFLATED_SIZE

    def __post_init__(self) -> None:
        BrokerURL.parse(self.broker_url)
        for name in ("max_message_size", "max_inflated_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a number of bytes >= 1, got {value!r}")
        if self.worker_pool not in WORKER_POOLS:
            raise ConfigError(
                f"worker_pool must be one of {', '.join(WORKER_POOLS)}, got {self.worker_pool!r}"
            )
        from amqptasks.topology.model import DECLARE_MODES, QUEUE_TYPES, check_name

        if self.default_queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"default_queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                f"got {self.default_queue_type!r}"
            )
        if self.topology_mode not in DECLARE_MODES:
            raise ConfigError(
                f"topology_mode must be one of {', '.join(DECLARE_MODES)}, "
                f"got {self.topology_mode!r}"
            )
        check_name(self.default_queue, "default_queue")
        check_name(self.delay_prefix, "delay_prefix")
        if len(self.delay_prefix.encode()) > 200:  # room for ".level.NN" and hop names
            raise ConfigError(
                f"delay_prefix must be at most 200 bytes, got {len(self.delay_prefix.encode())}"
            )
        if self.delay_queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"delay_queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                f"got {self.delay_queue_type!r}"
            )
        for name in (
            "publish_retry_interval_start",
            "publish_retry_interval_step",
            "publish_retry_interval_max",
            "publish_retry_max_retries",
            "task_default_retry_delay",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if self.worker_max_deliveries < 1:
            raise ConfigError("worker_max_deliveries must be >= 1")
        if self.task_max_retries is not None and self.task_max_retries < 0:
            raise ConfigError("task_max_retries must be >= 0 (or None for no limit)")
        check_name(self.default_exchange, "default_exchange", allow_empty=True)
        if self.worker_prefetch_multiplier < 1:
            raise ConfigError("worker_prefetch_multiplier must be >= 1")
        if self.worker_concurrency is not None and self.worker_concurrency < 1:
            raise ConfigError("worker_concurrency must be >= 1")
        if (
            isinstance(self.worker_processes, bool)
            or not isinstance(self.worker_processes, int)
            or self.worker_processes < 1
        ):
            raise ConfigError(
                f"worker_processes must be an integer >= 1, got {self.worker_processes!r}"
            )
        for name in ("worker_max_tasks_per_child", "worker_max_memory_per_child"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be an integer >= 1 (or None), got {value!r}")
        for name in ("task_time_limit", "task_soft_time_limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or math.isinf(value)
            ):
                raise ConfigError(
                    f"{name} must be a number of seconds > 0 (or None), got {value!r}"
                )
        value = self.broker_consumer_timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigError(
                f"broker_consumer_timeout must be a number of seconds >= 0, got {value!r}"
            )
        for name in ("publish_timeout", "result_expires", "worker_shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(self.accept_content, str) or not all(
            isinstance(item, str) for item in self.accept_content
        ):
            raise ConfigError(
                f"accept_content must be a list of serializer names, got {self.accept_content!r}"
            )
        from amqptasks.protocol import compression, serializers

        for name in (self.task_serializer, self.result_serializer, *self.accept_content):
            serializers.by_name(name)
        serializers.check_accepted(self.result_serializer, self.accept_content)
        if self.task_compression:
            compression.codec(self.task_compression)

    @property
    def broker(self) -> BrokerURL:
        """The parsed broker URL."""
        return BrokerURL.parse(self.broker_url)

    @classmethod
    def build(cls, given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Merge ``given`` settings with ``AMQPTASKS_*`` variables from ``environ``.

        Raises:
            ConfigError: for an unknown name (with close matches) or a bad value.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in given.items():
            if key not in known:
                raise ConfigError(_unknown_setting(key, known))
            values[key] = value
        env = os.environ if environ is None else environ
        for key in known:
            if key in _CODE_ONLY:
                continue
            raw = env.get(ENV_PREFIX + key.upper())
            if raw is None:
                continue
            try:
                values[key] = _ENV_PARSERS.get(key, str)(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}{key.upper()}: {exc}") from None
        for key in ("accept_content", "queues"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        from_env = [key for key in values if ENV_PREFIX + key.upper() in env]
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        except ConfigError as exc:
            named = [key for key in from_env if key in str(exc)]
            if not named:
                raise
            where = ", ".join(f"{ENV_PREFIX}{key.upper()}" for key in named)
            raise ConfigError(f"{exc} (set by the environment: {where})") from None


def _unknown_setting(key: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown setting {key!r}{hint}"


#: Settings that hold Python objects and cannot come from the environment.
_CODE_ONLY = frozenset({"queues", "routes"})

_ENV_PARSERS: dict[str, Callable[[str], Any]] = {
    "publish_retry": _parse_bool,
    "publish_retry_max_retries": int,
    "publish_retry_interval_start": float,
    "publish_retry_interval_step": float,
    "publish_retry_interval_max": float,
    "task_max_retries": _optional_int,
    "task_default_retry_delay": float,
    "task_dead_letter_failures": _parse_bool,
    "worker_max_deliveries": int,
    "management_url": _optional_str,
    "accept_content": _parse_str_tuple,
    "task_compression": _optional_str,
    "task_ignore_result": _parse_bool,
    "task_acks_early": _parse_bool,
    "task_track_started": _parse_bool,
    "publish_timeout": float,
    "result_expires": float,
    "worker_concurrency": _optional_int,
    "worker_prefetch_multiplier": int,
    "worker_shutdown_timeout": float,
    "worker_processes": int,
    "worker_max_tasks_per_child": _optional_int,
    "worker_max_memory_per_child": _optional_int,
    "task_time_limit": _optional_float,
    "task_soft_time_limit": _optional_float,
    "broker_consumer_timeout": float,
    "max_message_size": int,
    "max_inflated_size": int,
}


def settings_from_object(obj: object | str) -> dict[str, Any]:
    """Read settings from a module, class or object (or its import path).

    Lower-case public attributes whose names are settings are taken; upper-case
    names are accepted too (``BROKER_URL``), as in Django settings modules.
    """
    if isinstance(obj, str):
        try:
            obj = importlib.import_module(obj)
        except ImportError as exc:
            raise ConfigError(f"cannot import settings module {obj!r}: {exc}") from exc
    known = {f.name for f in dataclasses.fields(Settings)}
    found: dict[str, Any] = {}
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        name = attr.lower()
        if name.startswith("amqptasks_"):
            name = name[len("amqptasks_") :]
        if name in known:
            found[name] = getattr(obj, attr)
    return found
