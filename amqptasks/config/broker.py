"""The broker: its URL (parsed, password masked) and what workers learn about it.

A cluster is several URLs, ``;``-separated as Celery (kombu) writes failover URLs
(``amqp://n1//;amqp://n2//``), or a list of URLs: clients connect to the first
that answers and fail over to the next when a connection is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import non_negative_int, optional_str, parse_bool, positive_float
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from amqptasks.config.tls_options import TLSOptions

_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "pyamqp": 5672}


#: URL query parameters: name -> (parser, default). ``?heartbeat=10&connect_timeout=3``.
URL_PARAMETERS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "heartbeat": (non_negative_int, constants.DEFAULT_HEARTBEAT),
    "connect_timeout": (positive_float, constants.DEFAULT_CONNECT_TIMEOUT),
    "name": (str, ""),
}


#: Where one URL of a ``;``-separated list ends: a ``;`` before the next ``scheme://``
#: (so a password holding ``;`` still parses as one URL).
_NEXT_URL = re.compile(r"\s*;\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """The URLs of ``amqp://n1;amqp://n2`` (or of a list of URLs), blanks dropped."""
    if isinstance(urls, str):
        parts = _NEXT_URL.split(urls.strip())
    else:
        parts = [str(part).strip() for part in urls]
    return [part.strip().rstrip(";") for part in parts if part.strip().rstrip(";")]


def _without_credentials(text: str) -> str:
    """Text that is not a URL, shown without anything up to its last ``@``."""
    _before, at, after = text.rpartition("@")
    return f"***@{after}" if at else text


@dataclass(frozen=True)
class BrokerURL:
    """A parsed AMQP URL: ``amqp://user:password@host:port/vhost?heartbeat=30``.

    ``//`` as path (Celery's spelling) and ``/%2F`` both mean the vhost ``/``.
    ``str()`` and ``repr()`` mask the password.

    Several ``;``-separated URLs (a cluster's nodes) parse to the first node,
    with the others in :attr:`alternates`; :attr:`nodes` lists them all.
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
    #: TLS options (set from the ``broker_tls_*`` settings; None: the defaults for amqps://).
    tls: TLSOptions | None = None
    #: ``PLAIN`` (the URL's user and password) or ``EXTERNAL`` (the client certificate).
    login_method: str = "PLAIN"
    #: The other nodes of a cluster URL, tried in turn after this one.
    alternates: tuple[BrokerURL, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def parse(cls, url: str | Sequence[str]) -> BrokerURL:
        """Parse and validate ``url``: one URL, ``;``-separated URLs, or a list of URLs.

        Raises:
            ConfigError: naming the URL and the part that is wrong (no part of a
                password is ever echoed).
        """
        if not isinstance(url, str) and (
            not isinstance(url, Sequence) or not all(isinstance(u, str) for u in url)
        ):
            raise ConfigError(
                f"broker URL must be a string or a list of strings, got {type(url).__name__}"
            )
        parts = split_urls(url)
        if not parts:
            raise ConfigError("broker URL is empty: expected a URL such as amqp://localhost:5672//")
        nodes = [cls._parse_one(part) for part in parts]
        if len(nodes) == 1:
            return nodes[0]
        return replace(nodes[0], alternates=tuple(nodes[1:]))

    @classmethod
    def _parse_one(cls, url: str) -> BrokerURL:
        """Parse and validate one node's ``url``.

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
    def nodes(self) -> tuple[BrokerURL, ...]:
        """Every node of the URL, this one first (just this one without alternates)."""
        if not self.alternates:
            return (self,)
        return (replace(self, alternates=()), *self.alternates)

    @property
    def where(self) -> str:
        """``host:port/vhost`` of each node, ``,``-separated: for logs (no credentials)."""
        return ",".join(f"{node.host}:{node.port}" for node in self.nodes) + "/" + self.vhost

    @property
    def ssl(self) -> bool:
        """True for ``amqps://``, or TLS asked for by the settings (Celery's ``broker_use_ssl``)."""
        return self.scheme == "amqps" or self.tls is not None

    @property
    def external_login(self) -> bool:
        """True when the broker takes the user from the client certificate (EXTERNAL)."""
        return self.login_method == "EXTERNAL"

    def connection_name(self, role: str) -> str:
        """The name shown in the management UI: ``?name=`` from the URL, then ``role``."""
        return f"{self.name}: {role}" if self.name else role

    def redacted(self) -> str:
        """The URL (every node's, ``;``-separated) with passwords masked, for messages and logs.

        With the EXTERNAL login no user or password is sent, and none is shown.
        """
        return ";".join(node._redacted_node() for node in self.nodes)

    def _redacted_node(self) -> str:
        vhost = "/" + ("" if self.vhost == "/" else self.vhost)
        login = "" if self.external_login else f"{self.username}:***@"
        return f"{self.scheme}://{login}{self.host}:{self.port}{vhost}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"BrokerURL({self.redacted()!r})"


@dataclass(frozen=True)
class BrokerSettings(SettingsGroup):
    """Where the broker is, and what the app cannot ask it."""

    #: One URL; a cluster's nodes ``;``-separated (``amqp://n1//;amqp://n2//``), or
    #: a list of URLs (kept as the ``;``-separated text).
    broker_url: str = field(default=constants.DEFAULT_BROKER_URL, repr=False)
    #: Management API base URL (``http://host:15672``), for live arguments in
    #: mismatch reports and ``topology diff``; default: the broker host, port 15672.
    management_url: str | None = None
    #: The broker's ``consumer_timeout`` in seconds, when the management API cannot
    #: tell (0: the broker has none). Only used to warn about longer time limits.
    broker_consumer_timeout: float = constants.DEFAULT_BROKER_CONSUMER_TIMEOUT
    #: A worker that cannot reach the broker when it starts keeps trying (as
    #: Celery's setting of that name); False: it exits with the error at once.
    broker_connection_retry_on_startup: bool = True
    #: Connection attempts a starting worker makes before giving up (0: forever).
    broker_connection_max_retries: int = 100

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "management_url": optional_str,
        "broker_consumer_timeout": float,
        "broker_connection_retry_on_startup": parse_bool,
        "broker_connection_max_retries": non_negative_int,
    }

    def check(self) -> None:
        """The URL parses; the consumer timeout is a number of seconds >= 0."""
        urls: object = self.broker_url
        if isinstance(urls, list | tuple):  # a cluster's nodes as a list: one text
            BrokerURL.parse(urls)
            object.__setattr__(self, "broker_url", ";".join(split_urls(urls)))
        BrokerURL.parse(self.broker_url)
        retries = self.broker_connection_max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(
                f"broker_connection_max_retries must be an int >= 0 (0: forever), got {retries!r}"
            )
        value = self.broker_consumer_timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigError(
                f"broker_consumer_timeout must be a number of seconds >= 0, got {value!r}"
            )

    @property
    def broker(self) -> BrokerURL:
        """The parsed broker URL."""
        return BrokerURL.parse(self.broker_url)
