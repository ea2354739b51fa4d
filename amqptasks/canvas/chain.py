"""chain: calls one after the other, each result the first argument of the next.

On the wire (Celery protocol v2) the first call is sent with the rest of the
chain in its embed, reversed, so the worker that finishes a step pops the next
one off the end and sends it with what remains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqptasks.canvas.signature import Signature, maybe_signature
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from amqptasks.canvas._typing import CanvasApp
    from amqptasks.canvas.plan import Action, PlanContext

__all__ = ["chain"]

#: Options of a workflow that belong to the step whose result is the workflow's.
MEMBERSHIP = ("group_id", "group_index", "chord")


@Signature.register("chain")
class chain(Signature):
    """Run ``tasks`` one after the other; each result goes first into the next call.

    ``.get()`` on the result returns the last step's value; ``result.parent``
    walks back. A step that fails stops the chain: the steps after it report
    FAILURE and its ``link_error`` callbacks run.

    Example:
        >>> chain(add.s(2, 2), mul.s(10), add.si(1, 1)).delay().get(timeout=10)
        2
    """

    def __init__(self, *tasks: Any, app: CanvasApp | None = None, **options: Any) -> None:
        if (
            len(tasks) == 1
            and isinstance(tasks[0], Mapping)
            and tasks[0].get("subtask_type") == "chain"
        ):
            super().__init__(tasks[0], app=app)  # a chain dict, as sent
            self._app = app or _first_app(self.tasks)
            return
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps = [maybe_signature(task, app=app) for task in tasks]
        super().__init__(
            "celery.chain",
            (),
            {"tasks": steps},
            options,
            subtask_type="chain",
            app=app or _first_app(steps),
        )

    @property
    def tasks(self) -> list[Signature]:
        """The steps, as signatures."""
        raw = self.kwargs.get("tasks") or []
        steps = [maybe_signature(task, app=self._app) for task in raw]
        self["kwargs"] = {**self.kwargs, "tasks": steps}
        return steps

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if not isinstance(other, Mapping):
            return NotImplemented
        other = maybe_signature(other, app=self._app)
        more = other.tasks if isinstance(other, chain) else [other]
        return chain(*self.tasks, *more, app=self._app, **self.options)

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks) or "chain()"

    def steps(self) -> list[Signature]:
        """The steps to run: nested chains spliced in, ``group | task`` made a chord."""
        # By type name: the chord and group modules build on this one.
        chord, group = Signature.TYPES["chord"], Signature.TYPES["group"]
        flat: list[Signature] = []
        for step in self.tasks:
            flat.extend(step.steps() if isinstance(step, chain) else [step])
        joined: list[Signature] = []
        for step in flat:
            if joined and isinstance(joined[-1], group) and not isinstance(step, group):
                joined.append(chord(joined.pop(), step, app=self._app))
            else:
                joined.append(step)
        if not joined:
            raise ConfigError("an empty chain has nothing to run")
        return joined

    def freeze(self, ctx: PlanContext) -> Any:
        """Freeze every step; the result is the last step's, ``.parent`` the one before."""
        return self._freeze_steps(self.steps(), ctx)

    def _freeze_steps(self, steps: list[Signature], ctx: PlanContext) -> Any:
        previous = None
        result = None
        for step in steps:
            result = step.freeze(ctx)
            if previous is not None and getattr(_first_of(result), "parent", None) is None:
                _first_of(result).parent = previous
            previous = result
        self["kwargs"] = {**self.kwargs, "tasks": steps}
        return result

    def plan(
        self,
        args: Any,
        kwargs: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        ctx: PlanContext,
    ) -> tuple[list[Action], Any]:
        steps = [step.clone() for step in self.steps()]
        own = self.options
        carried = {k: own[k] for k in (*MEMBERSHIP, "chain") if own.get(k) is not None}
        extra = {**carried, **extra}
        # Errbacks go on every step (any of them may be the one that fails),
        # callbacks and membership on the last (its result is the chain's).
        errbacks = _as_list(own.get("link_error")) + _as_list(extra.get("link_error"))
        if errbacks:
            for step in steps:
                step.options["link_error"] = [*_as_list(step.options.get("link_error")), *errbacks]
        last = steps[-1]
        callbacks = _as_list(own.get("link")) + _as_list(extra.get("link"))
        if callbacks:
            last.options["link"] = [*_as_list(last.options.get("link")), *callbacks]
        for key in MEMBERSHIP:
            if extra.get(key) is not None:
                last.options[key] = extra[key]
        if extra.get("task_id") and len(steps) > 1:
            last.options["task_id"] = extra["task_id"]  # chain(task_id=) names the last step
        result = self._freeze_steps(steps, ctx)
        first, rest = steps[0], steps[1:]
        outer_rest = list(extra.get("chain") or [])
        first_extra: dict[str, Any] = {
            key: value
            for key, value in extra.items()
            if key not in (*MEMBERSHIP, "chain", "link", "link_error", "task_id")
        }
        if extra.get("task_id") and len(steps) == 1:
            first_extra["task_id"] = extra["task_id"]
        pending = [*outer_rest, *(dict(step) for step in reversed(rest))]
        if pending:
            first_extra["chain"] = pending
        actions, _ = first.plan(args, kwargs, first_extra, ctx)
        return actions, result


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    return [dict(item) for item in value]


def _first_app(steps: Any) -> Any:
    for step in steps:
        app = getattr(step, "_app", None)
        if app is not None:
            return app
    return None


def _first_of(result: Any) -> Any:
    """The handle whose ``parent`` links a step to the one before (a chord's: its group's)."""
    node = result
    while getattr(node, "parent", None) is not None:
        node = node.parent
    return node
