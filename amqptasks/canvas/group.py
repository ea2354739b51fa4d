"""group: calls that run in parallel; their results come back in order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from amqptasks.canvas.signature import Signature, maybe_signature
from amqptasks.exceptions import ConfigError
from amqptasks.protocol.envelope import new_task_id
from amqptasks.results.group import GroupResult

if TYPE_CHECKING:
    from amqptasks.canvas._typing import CanvasApp
    from amqptasks.canvas.plan import Action, PlanContext

__all__ = ["group"]


@Signature.register("group")
class group(Signature):
    """Run ``tasks`` in parallel; ``.get()`` returns their values in order.

    Each member is sent with Celery's ``group`` (the group id) and
    ``group_index`` headers. Arguments given when it is sent go in front of
    every member's own.

    Example:
        >>> group(add.s(i, i) for i in range(10)).delay().get(timeout=10)
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    """

    def __init__(self, *tasks: Any, app: CanvasApp | None = None, **options: Any) -> None:
        if (
            len(tasks) == 1
            and isinstance(tasks[0], Mapping)
            and tasks[0].get("subtask_type") == "group"
        ):
            super().__init__(tasks[0], app=app)  # a group dict, as sent
            return
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        members = [maybe_signature(task, app=app) for task in tasks]
        first = next((m._app for m in members if m._app is not None), None)
        super().__init__(
            "celery.group",
            (),
            {"tasks": members},
            options,
            subtask_type="group",
            app=app or first,
        )

    @property
    def tasks(self) -> list[Signature]:
        """The members, as signatures."""
        members = [maybe_signature(task, app=self._app) for task in self.kwargs.get("tasks") or []]
        self["kwargs"] = {**self.kwargs, "tasks": members}
        return members

    def __len__(self) -> int:
        return len(self.kwargs.get("tasks") or [])

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if not isinstance(other, Mapping):
            return NotImplemented
        other = maybe_signature(other, app=self._app)
        if isinstance(other, group):
            return super().__or__(other)
        # By type name: the chord module builds on this one.
        return Signature.TYPES["chord"](self, other, app=self._app)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(task) for task in self.tasks)}])"

    def _group_id(self, extra: Mapping[str, Any] | None = None) -> str:
        options = self.options
        if not options.get("group_id"):
            options["group_id"] = (extra or {}).get("group_id") or new_task_id()
        return str(options["group_id"])

    def freeze(self, ctx: PlanContext) -> GroupResult:
        """Freeze every member; a :class:`GroupResult` of their results, in order."""
        group_id = self._group_id()
        results = [member.freeze(ctx) for member in self.tasks]
        return GroupResult(group_id, results)

    def plan(
        self,
        args: Any,
        kwargs: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        ctx: PlanContext,
    ) -> tuple[list[Action], Any]:
        group_id = self._group_id(extra)
        membership: dict[str, Any] = {"group_id": group_id}
        if extra.get("chord") is not None:
            membership["chord"] = extra["chord"]
        actions: list[Action] = []
        results = []
        for index, member in enumerate(self.tasks):
            if isinstance(member, group):
                raise ConfigError("a group inside a group: put its members in the outer one")
            planned, result = member.plan(args, kwargs, {**membership, "group_index": index}, ctx)
            actions.extend(planned)
            results.append(result)
        return actions, GroupResult(group_id, results)


def map_signatures(task: Any, items: Iterable[Any], *, star: bool) -> group:
    """One call of ``task`` per item (``task(item)``, or ``task(*item)`` with ``star``)."""
    return group([task.s(*item) if star else task.s(item) for item in items])


def chunk_signatures(task: Any, items: Iterable[Any], size: int) -> group:
    """``items`` split into calls of Celery's ``celery.starmap`` of ``size`` items each."""
    if size < 1:
        raise ConfigError(f"chunks need a size of at least 1, got {size}")
    listed = [list(item) for item in items]
    parts = [listed[start : start + size] for start in range(0, len(listed), size)]
    template = dict(task.s())
    return group(
        [
            Signature("celery.starmap", (), {"task": template, "it": part}, app=task.app)
            for part in parts
        ]
    )
