"""Periodic entries: what to send and when, declared in code or at runtime (pure).

An entry is Celery's ``beat_schedule`` item: a task name, its schedule, its
arguments and ``apply_async`` options, plus where its wall clock is and what to
do with missed occurrences. Each occurrence is named by :func:`occurrence_id`,
which is also the task id of the message the beat sends for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amqptasks.beat.schedules import Schedule, get_zone, schedule_from_dict, to_schedule
from amqptasks.config import CATCH_UP_POLICIES
from amqptasks.exceptions import ConfigError
from amqptasks.publishing import PUBLISH_OPTION_NAMES

__all__ = [
    "Entry",
    "add_code_entry",
    "code_entries",
    "entries_from_beat_schedule",
    "occurrence_id",
]

#: Namespace of occurrence ids: uuid5(NAMESPACE, "<entry>@<UTC instant>").
NAMESPACE = uuid.UUID("6f0d3a55-7f0b-4a57-9a57-2f1f7a1c5b10")
#: ``apply_async`` options an entry may not carry: the beat sets them per occurrence.
_FIXED_OPTIONS = frozenset({"task_id", "countdown", "eta", "retry", "retry_policy"})


def occurrence_id(name: str, instant: dt.datetime) -> str:
    """The task id of ``name``'s occurrence at ``instant`` (the same in every process)."""
    stamp = instant.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    return str(uuid.uuid5(NAMESPACE, f"{name}@{stamp}"))


def trigger_id(name: str, request: str) -> str:
    """The task id of a manual ``trigger`` of ``name`` (request: the trigger's own id)."""
    return str(uuid.uuid5(NAMESPACE, f"{name}!trigger!{request}"))


@dataclass(frozen=True)
class Entry:
    """One periodic task.

    Attributes:
        name: Unique name of the entry (part of every occurrence's identity).
        task: The task's registered name.
        schedule: When (see :mod:`amqptasks.beat.schedules`).
        args, kwargs: The call's arguments.
        options: ``apply_async`` options (``queue``, ``priority``, ``expires`` in
            seconds after the occurrence, ``headers``, ...).
        timezone: IANA zone of a wall-clock schedule (None: the app's ``timezone``).
        catch_up: ``latest``, ``all`` or ``skip`` (None: the app's ``beat_catch_up``).
        catch_up_window: Seconds (None: the app's ``beat_catch_up_window``).
    """

    name: str
    task: str
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    catch_up: str | None = None
    catch_up_window: float | None = None

    def __post_init__(self) -> None:
        where = f"periodic entry {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a periodic entry needs a non-empty name, got {self.name!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError(f"{where}: task must be a task name, got {self.task!r}")
        if not isinstance(self.schedule, Schedule):
            object.__setattr__(self, "schedule", to_schedule(self.schedule))
        if isinstance(self.args, str) or not isinstance(self.args, Sequence):
            raise ConfigError(f"{where}: args must be a list or tuple, got {self.args!r}")
        object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"{where}: kwargs must be a mapping, got {self.kwargs!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"{where}: options must be a mapping, got {self.options!r}")
        unknown = sorted(set(self.options) - (PUBLISH_OPTION_NAMES - _FIXED_OPTIONS))
        if unknown:
            raise ConfigError(f"{where}: unknown or per-occurrence option(s) {', '.join(unknown)}")
        expires = self.options.get("expires")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0
        ):
            raise ConfigError(f"{where}: expires must be seconds > 0, got {expires!r}")
        if self.timezone is not None:
            get_zone(self.timezone)
        if self.catch_up is not None and self.catch_up not in CATCH_UP_POLICIES:
            raise ConfigError(
                f"{where}: catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, "
                f"got {self.catch_up!r}"
            )
        window = self.catch_up_window
        if window is not None and (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not window > 0
            or math.isinf(window)
        ):
            raise ConfigError(f"{where}: catch_up_window must be seconds > 0, got {window!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (how runtime entries are kept on the broker)."""
        return {
            "name": self.name,
            "task": self.task,
            "schedule": self.schedule.to_dict(),
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": dict(self.options),
            "timezone": self.timezone,
            "catch_up": self.catch_up,
            "catch_up_window": self.catch_up_window,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """Read back :meth:`to_dict`.

        Raises:
            ConfigError: a missing or bad field.
        """
        try:
            return cls(
                name=data["name"],
                task=data["task"],
                schedule=schedule_from_dict(data["schedule"]),
                args=tuple(data.get("args") or ()),
                kwargs=dict(data.get("kwargs") or {}),
                options=dict(data.get("options") or {}),
                timezone=data.get("timezone"),
                catch_up=data.get("catch_up"),
                catch_up_window=data.get("catch_up_window"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"unreadable periodic entry {dict(data)!r}: {exc}") from None


#: Keys of a ``beat_schedule`` item besides Celery's (task, schedule, args, kwargs, options).
_ENTRY_KEYS = frozenset(
    {"task", "schedule", "args", "kwargs", "options", "timezone", "catch_up", "catch_up_window"}
)


def entries_from_beat_schedule(schedule: Mapping[str, Any] | None) -> list[Entry]:
    """Entries from Celery's ``beat_schedule`` dict.

    Raises:
        ConfigError: an item that is not a dict, lacks ``task``/``schedule``, or has
            an unknown key (``relative`` and ``solar`` schedules are not supported).
    """
    found: list[Entry] = []
    for name, item in (schedule or {}).items():
        if not isinstance(item, Mapping):
            raise ConfigError(f"beat_schedule[{name!r}] must be a dict, got {item!r}")
        unknown = sorted(set(item) - _ENTRY_KEYS)
        if unknown:
            raise ConfigError(f"beat_schedule[{name!r}]: unknown key(s) {', '.join(unknown)}")
        missing = [key for key in ("task", "schedule") if key not in item]
        if missing:
            raise ConfigError(f"beat_schedule[{name!r}] needs {' and '.join(missing)}")
        found.append(Entry(name=name, **{key: item[key] for key in item}))
    return found


#: Entries added in code (``add_periodic_task``, ``@periodic``), per app.
_CODE_ENTRIES: weakref.WeakKeyDictionary[object, dict[str, Entry]] = weakref.WeakKeyDictionary()


def add_code_entry(
    app: object,
    schedule: object,
    sig: object,
    *,
    name: str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Entry:
    """Keep an entry declared in code for ``app``; see :meth:`App.add_periodic_task`.

    ``sig`` is a task name, a Task, or a signature (anything with ``task``,
    ``args``, ``kwargs`` and ``options`` attributes, as Celery's ``task.s()``).

    Raises:
        ConfigError: bad entry, or a name already used by another entry.
    """
    task_name, sig_args, sig_kwargs, sig_options = _read_signature(sig)
    options = {**sig_options, **dict(extra.pop("options", None) or {})}
    options.update({key: extra.pop(key) for key in list(extra) if key in PUBLISH_OPTION_NAMES})
    entry = Entry(
        name=name or f"{task_name}:{to_schedule(schedule).describe()}",
        task=task_name,
        schedule=to_schedule(schedule),
        args=tuple(args if args is not None else sig_args),
        kwargs=dict(kwargs if kwargs is not None else sig_kwargs),
        options=options,
        **extra,
    )
    entries = _CODE_ENTRIES.setdefault(app, {})
    previous = entries.get(entry.name)
    if previous is not None and previous != entry:
        raise ConfigError(f"periodic entry {entry.name!r} is already declared differently")
    entries[entry.name] = entry
    return entry


def _read_signature(sig: object) -> tuple[str, Sequence[Any], Mapping[str, Any], dict[str, Any]]:
    if isinstance(sig, str):
        return sig, (), {}, {}
    task = getattr(sig, "task", None)
    if isinstance(task, str):  # a signature
        options = dict(getattr(sig, "options", None) or {})
        return task, getattr(sig, "args", ()) or (), getattr(sig, "kwargs", {}) or {}, options
    name = getattr(sig, "name", None)
    if isinstance(name, str) and callable(getattr(sig, "apply_async", None)):  # a Task
        return name, (), {}, {}
    raise ConfigError(f"a periodic task needs a task name, a task or a signature, got {sig!r}")


def code_entries(app: object) -> list[Entry]:
    """Every entry of ``app`` declared in code: its ``beat_schedule`` setting first,
    then ``add_periodic_task`` and ``@periodic``.

    Raises:
        ConfigError: a bad ``beat_schedule``, or one name used twice.
    """
    settings = getattr(app, "settings", None)
    found = entries_from_beat_schedule(getattr(settings, "beat_schedule", None))
    names = {entry.name for entry in found}
    for entry in _CODE_ENTRIES.get(app, {}).values():
        if entry.name in names:
            raise ConfigError(f"periodic entry {entry.name!r} is declared twice")
        found.append(entry)
    return found


def with_defaults(entry: Entry, settings: Any) -> Entry:
    """``entry`` with the app's time zone and catch-up settings filled in."""
    return dataclasses.replace(
        entry,
        timezone=entry.timezone or settings.timezone,
        catch_up=entry.catch_up or settings.beat_catch_up,
        catch_up_window=entry.catch_up_window or settings.beat_catch_up_window,
    )
