"""A small client for RabbitMQ's management HTTP API (read-only).

Used to show live arguments in a :class:`TopologyMismatch`, for
``amqptasks topology diff`` and to read broker settings. Every call has a short
timeout and returns ``None`` when the API is unreachable: it is a helper, never
a requirement. https://www.rabbitmq.com/docs/management#http-api
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from amqptasks.logging import get_logger, redact

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL

log = get_logger(__name__)

DEFAULT_MANAGEMENT_PORT = 15672


class Management:
    """Read queues, exchanges and bindings of one vhost.

    Args:
        base_url: e.g. ``http://localhost:15672`` (credentials in the URL win).
        broker: The broker URL whose user, password and vhost are used.
        timeout: Seconds per request.
    """

    def __init__(self, base_url: str | None, broker: BrokerURL, *, timeout: float = 3.0) -> None:
        if not base_url:
            scheme = "https" if broker.ssl else "http"
            base_url = f"{scheme}://{broker.host}:{DEFAULT_MANAGEMENT_PORT}"
        parts = urllib.parse.urlsplit(base_url)
        self._user = urllib.parse.unquote(parts.username) if parts.username else broker.username
        self._password = urllib.parse.unquote(parts.password) if parts.password else broker.password
        netloc = parts.hostname or broker.host
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        self.base_url = f"{parts.scheme or 'http'}://{netloc}{parts.path.rstrip('/')}"
        self.vhost = broker.vhost
        self.timeout = timeout

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self.base_url + path)
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            log.debug("management API refused", url=redact(self.base_url + path), status=exc.code)
            return None
        except (OSError, ValueError) as exc:
            log.debug("management API unreachable", url=redact(self.base_url), error=str(exc))
            return None

    def _vhost(self) -> str:
        return urllib.parse.quote(self.vhost, safe="")

    def available(self) -> bool:
        """True if the API answers with these credentials."""
        return self._get("/api/overview") is not None

    def version(self) -> str | None:
        """The broker's RabbitMQ version (``rabbitmq_version``), e.g. ``"4.0.5"``."""
        found = self._get("/api/overview")
        version = found.get("rabbitmq_version") if isinstance(found, dict) else None
        return version if isinstance(version, str) else None

    def queue(self, name: str) -> dict[str, Any] | None:
        """The live definition of queue ``name`` (``arguments``, ``durable``, ...)."""
        found = self._get(f"/api/queues/{self._vhost()}/{urllib.parse.quote(name, safe='')}")
        return found if isinstance(found, dict) else None

    def exchange(self, name: str) -> dict[str, Any] | None:
        """The live definition of exchange ``name``."""
        found = self._get(f"/api/exchanges/{self._vhost()}/{urllib.parse.quote(name, safe='')}")
        return found if isinstance(found, dict) else None

    def live(self, kind: str, name: str) -> dict[str, Any] | None:
        """:meth:`queue` or :meth:`exchange`, by kind."""
        return self.queue(name) if kind == "queue" else self.exchange(name)

    def queues(self) -> list[dict[str, Any]] | None:
        """Every queue of the vhost, or None when the API is unreachable."""
        found = self._get(f"/api/queues/{self._vhost()}")
        return found if isinstance(found, list) else None

    def exchanges(self) -> list[dict[str, Any]] | None:
        """Every exchange of the vhost."""
        found = self._get(f"/api/exchanges/{self._vhost()}")
        return found if isinstance(found, list) else None

    def bindings(self) -> list[dict[str, Any]] | None:
        """Every binding of the vhost."""
        found = self._get(f"/api/bindings/{self._vhost()}")
        return found if isinstance(found, list) else None
