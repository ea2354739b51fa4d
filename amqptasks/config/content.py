"""Content settings: how task and result bodies are serialized and compressed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import optional_str, str_tuple
from amqptasks.exceptions import ConfigError
from amqptasks.protocol import compression, serializers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class ContentSettings(SettingsGroup):
    """Serializers and compression of what is sent, and what is accepted."""

    task_serializer: str = constants.DEFAULT_SERIALIZER
    result_serializer: str = constants.DEFAULT_SERIALIZER
    #: Content types a worker accepts; pickle is refused unless named here.
    accept_content: tuple[str, ...] = ("json", "msgpack", "yaml")
    task_compression: str | None = None
    #: Largest message body (bytes, as sent) a worker accepts and a producer sends;
    #: larger deliveries are dead-lettered ``too-large`` (see docs/worker.md#size-limits).
    max_message_size: int = constants.DEFAULT_MAX_MESSAGE_SIZE
    #: Largest body (bytes) a compressed message may inflate to, in a worker and
    #: before compression in a producer.
    max_inflated_size: int = constants.DEFAULT_MAX_INFLATED_SIZE

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "accept_content": str_tuple,
        "task_compression": optional_str,
        "max_message_size": int,
        "max_inflated_size": int,
    }

    def check(self) -> None:
        """Known serializers and codec; results are sent in an accepted type; size limits."""
        for name in ("max_message_size", "max_inflated_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a number of bytes >= 1, got {value!r}")
        if isinstance(self.accept_content, str) or not all(
            isinstance(item, str) for item in self.accept_content
        ):
            raise ConfigError(
                f"accept_content must be a list of serializer names, got {self.accept_content!r}"
            )
        for name in (self.task_serializer, self.result_serializer, *self.accept_content):
            serializers.by_name(name)
        serializers.check_accepted(self.result_serializer, self.accept_content)
        if self.task_compression:
            compression.codec(self.task_compression)
