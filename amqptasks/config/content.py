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

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "accept_content": str_tuple,
        "task_compression": optional_str,
    }

    def check(self) -> None:
        """Known serializers and codec; results are sent in an accepted type."""
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
