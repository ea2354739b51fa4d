"""The base of every settings group: fields, their checks and their environment parsers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class SettingsGroup:
    """The settings one capability owns (the broker, topology, workers, ...).

    A group is a frozen dataclass whose fields are its settings (each with its
    default). It brings:

    - :meth:`check`, which raises :class:`~amqptasks.exceptions.ConfigError`
      for a bad value of its own fields;
    - :attr:`ENV_PARSERS`, how its ``AMQPTASKS_<NAME>`` variables are read
      (``str`` for the fields not listed);
    - :attr:`CODE_ONLY`, fields holding Python objects, never read from the
      environment.

    :class:`~amqptasks.config.Settings` inherits from every group, so adding a
    capability's settings is adding one group to its bases.
    """

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {}
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        # Every group in the MRO checks its own fields, in the order of the bases.
        for group in type(self).__mro__:
            check = vars(group).get("check")
            if check is not None:
                check(self)

    def check(self) -> None:
        """Raise ConfigError for a bad value of this group's fields (nothing to check here)."""

    @classmethod
    def env_parsers(cls) -> dict[str, Callable[[str], Any]]:
        """The environment parsers of every group this class is made of."""
        found: dict[str, Callable[[str], Any]] = {}
        for group in reversed(cls.__mro__):
            found.update(vars(group).get("ENV_PARSERS", {}))
        return found

    @classmethod
    def code_only(cls) -> frozenset[str]:
        """The code-only fields of every group this class is made of."""
        names: set[str] = set()
        for group in cls.__mro__:
            names.update(vars(group).get("CODE_ONLY", ()))
        return frozenset(names)
