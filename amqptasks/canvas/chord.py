"""chord: a group whose results, in order, are the first argument of one more call.

The members' results are gathered on the broker, not in a result store: the
chord's own queues (see :mod:`amqptasks.canvas.joins`) are made before any
member is sent, each member's worker leaves its result there, and the one
worker that completes the set sends the body once, with the ordered list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqptasks.canvas.group import group
from amqptasks.canvas.plan import OpenChord
from amqptasks.canvas.signature import Signature, maybe_signature
from amqptasks.exceptions import ConfigError
from amqptasks.protocol.envelope import new_task_id

if TYPE_CHECKING:
    from amqptasks.canvas._typing import CanvasApp
    from amqptasks.canvas.plan import Action, PlanContext

__all__ = ["JOIN_OPTION", "chord"]

#: Option of a chord's body naming the chord whose broker-held join calls it.
#: A chord sent by Celery has no such join: an amqptasks worker refuses it.
JOIN_OPTION = "amqptasks_chord"
#: Body options carried over when the chord is a step or a member of something bigger.
FORWARDED = ("chain", "group_id", "group_index", "chord", "link", "link_error")


@Signature.register("chord")
class chord(Signature):
    """Run ``header`` (a group) in parallel, then ``body`` with the list of its results.

    A member that fails (after its retries) means the body is not called: the
    chord's ``link_error`` callbacks run, with the failed member's task id, and
    ``.get()`` on the chord's result raises :class:`~amqptasks.ChordError`.

    Example:
        >>> chord(add.s(i, i) for i in range(10))(tsum.s()).get(timeout=10)
        90
    """

    def __init__(
        self,
        header: Any,
        body: Mapping[str, Any] | None = None,
        *,
        app: CanvasApp | None = None,
        **options: Any,
    ) -> None:
        if isinstance(header, Mapping) and header.get("subtask_type") == "chord":
            super().__init__(header, app=app)
            return
        members = header if isinstance(header, group) else group(header, app=app)
        given_app = app or members._app or getattr(body, "_app", None)
        super().__init__(
            "celery.chord",
            (),
            {"header": members, "body": maybe_signature(body, app=given_app) if body else None},
            options,
            subtask_type="chord",
            app=given_app,
        )

    @property
    def header(self) -> group:
        """The members (a group)."""
        raw = self.kwargs.get("header")
        members = raw if isinstance(raw, group) else group(raw or [], app=self._app)
        self["kwargs"] = {**self.kwargs, "header": members}
        return members

    @property
    def body(self) -> Signature | None:
        """What is called with the members' results."""
        raw = self.kwargs.get("body")
        if raw is None:
            return None
        body = maybe_signature(raw, app=self._app)
        self["kwargs"] = {**self.kwargs, "body": body}
        return body

    def __call__(self, body: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """``chord(header)(body)`` sends the chord with this body (Celery's spelling)."""
        if body is not None:
            self["kwargs"] = {**self.kwargs, "body": maybe_signature(body, app=self._app)}
        return self.apply_async((), {}, **options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def link_error(self, errback: Mapping[str, Any]) -> Signature:
        """Call ``errback`` (with the failed member's task id) if the chord fails."""
        self.options["link_error"] = [*_as_list(self.options.get("link_error")), dict(errback)]
        return maybe_signature(errback, app=self._app)

    on_error = link_error

    def _need_body(self) -> Signature:
        body = self.body
        if body is None:
            raise ConfigError("a chord needs a body: chord(header, body) or chord(header)(body)")
        return body

    def _chord_id(self) -> str:
        header = self.header
        if not header.options.get("group_id"):
            header.options["group_id"] = new_task_id()
        return str(header.options["group_id"])

    def freeze(self, ctx: PlanContext) -> Any:
        """Freeze the members and the body; the body's result, ``.parent`` the members'."""
        self._chord_id()
        members = self.header.freeze(ctx)
        result = self._need_body().freeze(ctx)
        node = result
        while getattr(node, "parent", None) is not None:  # a chain body: its first step
            node = node.parent
        node.parent = members
        return result

    def plan(
        self,
        args: Any,
        kwargs: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        ctx: PlanContext,
    ) -> tuple[list[Action], Any]:
        chord_id = self._chord_id()
        result = self.freeze(ctx)
        body = self._need_body().clone()
        size = len(self.header)
        forwarded = {**self.options, **extra}
        for key in FORWARDED:
            value = forwarded.get(key)
            if value is None:
                continue
            if key in ("link", "link_error"):
                body.options[key] = [*_as_list(body.options.get(key)), *_as_list(value)]
            else:
                body.options[key] = value
        if size == 0:
            return body.plan([[]], None, {}, ctx)[0], result
        body["chord_size"] = size
        body.options[JOIN_OPTION] = chord_id
        actions: list[Action] = [OpenChord(chord_id)]
        members, _ = self.header.plan(
            args, kwargs, {"group_id": chord_id, "chord": dict(body)}, ctx
        )
        actions.extend(members)
        return actions, result


def _as_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    return [dict(item) for item in value]
