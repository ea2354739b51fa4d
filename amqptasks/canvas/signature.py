"""Signature: one task call described as data, the unit every workflow is made of.

A signature is a ``dict`` in Celery's wire form, so it can travel inside a task
message (the ``chain``, ``callbacks``, ``errbacks`` and ``chord`` fields of the
embed) and be read by either kind of worker::

    {"task": "proj.add", "args": [2], "kwargs": {}, "options": {...},
     "subtask_type": None, "immutable": False, "chord_size": None}

``subtask_type`` says which kind of workflow a dict is (``chain``, ``group``,
``chord``; None for a single task); :func:`from_dict` turns any of them back
into its class.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks.canvas.plan import PlanContext, call_options, execute_async, execute_sync
from amqptasks.exceptions import ConfigError
from amqptasks.protocol.envelope import new_task_id

if TYPE_CHECKING:
    from amqptasks.canvas._typing import CanvasApp
    from amqptasks.canvas.plan import Action

__all__ = ["Signature", "from_dict", "maybe_signature", "signature"]


class Signature(dict[str, Any]):
    """A task call that has not been sent: name, arguments and options.

    Made with ``task.s(...)``, ``task.si(...)`` or :func:`signature`; combined
    with ``|`` (a chain), :class:`~amqptasks.canvas.group` and
    :class:`~amqptasks.canvas.chord`.

    Args:
        task: A task (or its name), or a signature dict to copy.
        args: Positional arguments; a callback's input is put in front of them.
        kwargs: Keyword arguments.
        options: :class:`~amqptasks.PublishOptions` for the call.
        immutable: Take no input from the step before (``task.si``).
        app: The app that sends it (a task's own app by default).

    Example:
        >>> (add.s(2, 2) | mul.s(10)).delay().get(timeout=10)
        40
    """

    #: subtask_type -> class, for :func:`from_dict`.
    TYPES: ClassVar[dict[str, type[Signature]]] = {}

    def __init__(
        self,
        task: Any = None,
        args: Any = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: CanvasApp | None = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, Mapping):
            super().__init__(task)
        else:
            name = getattr(task, "name", task)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"a signature needs a task or a task name, got {task!r}")
            if args is not None and (isinstance(args, str | bytes | Mapping)):
                raise ConfigError(f"args must be a list or tuple, got {type(args).__name__}")
            super().__init__(
                task=name,
                args=list(args or ()),
                kwargs=dict(kwargs or {}),
                options={**(options or {}), **extra_options},
                subtask_type=subtask_type,
                immutable=immutable,
                chord_size=None,
            )
        self._app: CanvasApp | None = app or getattr(task, "app", None)

    @classmethod
    def register(cls, kind: str) -> Any:
        """Class decorator: ``kind`` (a ``subtask_type``) is read back as this class."""

        def add(subclass: type[Signature]) -> type[Signature]:
            Signature.TYPES[kind] = subclass
            return subclass

        return add

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: CanvasApp | None = None) -> Signature:
        """A signature of this class from its dict form."""
        return cls(data, app=app)

    # -- the dict's fields -----------------------------------------------------------------

    @property
    def task(self) -> str:
        """The task's name."""
        return str(self["task"])

    name = task

    @property
    def args(self) -> list[Any]:
        """Positional arguments."""
        return list(self.get("args") or ())

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments."""
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        """Call options (the dict itself: changing it changes the signature)."""
        options = self.get("options")
        if not isinstance(options, dict):
            options = self["options"] = dict(options or {})
        return options

    @property
    def immutable(self) -> bool:
        """True when the step before's result is not passed in (``task.si``)."""
        return bool(self.get("immutable"))

    @property
    def subtask_type(self) -> str | None:
        """``chain``, ``group``, ``chord``, or None for one task."""
        value = self.get("subtask_type")
        return str(value) if value else None

    @property
    def id(self) -> str | None:
        """The task id this call will have, once frozen (or set with ``.set(task_id=)``)."""
        value = self.options.get("task_id")
        return str(value) if value else None

    @property
    def app(self) -> CanvasApp:
        """The app that sends this signature.

        Raises:
            ConfigError: a signature made from a task name without ``app=``.
        """
        if self._app is None:
            raise ConfigError(
                f"signature {self.task!r} has no app: make it with task.s(...) or pass app="
            )
        return self._app

    # -- building ------------------------------------------------------------------------------

    def clone(
        self, args: Any = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A deep copy, with ``args`` put in front, ``kwargs`` and ``options`` merged in."""
        copied = from_dict(copy.deepcopy(dict(self)), app=self._app)
        if args:
            copied["args"] = [*args, *copied.args]
        if kwargs:
            copied["kwargs"] = {**copied.kwargs, **kwargs}
        copied.options.update(options)
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # The app is shared, not copied (it holds connections and locks).
        return from_dict(copy.deepcopy(dict(self), memo), app=self._app)

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set call options (``queue=``, ``countdown=`` ...) in place; returns the signature."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def link(self, callback: Mapping[str, Any]) -> Signature:
        """Call ``callback`` with this call's result when it succeeds; returns ``callback``."""
        self.options["link"] = [*_as_list(self.options.get("link")), dict(callback)]
        return maybe_signature(callback, app=self._app)

    def link_error(self, errback: Mapping[str, Any]) -> Signature:
        """Call ``errback`` with this call's task id when it fails for good."""
        self.options["link_error"] = [*_as_list(self.options.get("link_error")), dict(errback)]
        return maybe_signature(errback, app=self._app)

    on_error = link_error

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if not isinstance(other, Mapping):
            return NotImplemented
        return Signature.TYPES["chain"](self, other, app=self._app)

    def __repr__(self) -> str:
        args = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        marker = "si" if self.immutable else "s"
        return f"{self.task}.{marker}({args})"

    # -- planning and sending ------------------------------------------------------------------

    def freeze(self, ctx: PlanContext) -> Any:
        """Give the call its task id (and where it reports) if it has none; its result."""
        options = self.options
        if not options.get("task_id"):
            options["task_id"] = new_task_id()
        if ctx.reply_to and not options.get("reply_to"):
            options["reply_to"] = ctx.reply_to
        return ctx.result(options["task_id"], self.task)

    def plan(
        self,
        args: Any,
        kwargs: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        ctx: PlanContext,
    ) -> tuple[list[Action], Any]:
        """The messages that start this call with partial ``args``, and its result handle.

        ``extra`` are options set by the enclosing workflow (``chain`` for what
        follows, ``group_id``/``group_index``/``chord`` for membership).
        """
        result = self.freeze(ctx)
        if self.immutable:
            call_args, call_kwargs = self.args, self.kwargs
        else:
            call_args = [*(args or ()), *self.args]
            call_kwargs = {**self.kwargs, **(kwargs or {})}
        options = {**self.options, **extra}
        return [call_options(self.task, call_args, call_kwargs, options, ctx)], result

    def apply_async(
        self, args: Any = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Send the call (or the whole workflow), with ``args`` put in front of its own.

        Returns:
            An :class:`~amqptasks.AsyncResult` (a chain's: the last step's, with
            ``.parent``), or a :class:`~amqptasks.GroupResult` for a group.
        """
        app = self.app
        ctx = PlanContext(app, reply_to=app._reply_queue(), store=app.results)
        actions, result = self.clone().plan(args, kwargs, _call_extra(options), ctx)
        execute_sync(app, actions)
        return result

    async def aapply_async(
        self, args: Any = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Async :meth:`apply_async` (aio-pika)."""
        app = self.app
        ctx = PlanContext(app, reply_to=await app._areply_queue(), store=app.results)
        actions, result = self.clone().plan(args, kwargs, _call_extra(options), ctx)
        await execute_async(app, actions)
        return result

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send with these extra arguments: ``sig.delay(1)`` is ``sig.apply_async((1,))``."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> Any:
        """Async :meth:`delay`."""
        return await self.aapply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now (no broker), with these extra arguments."""
        task = self.app.tasks.get(self.task)
        if self.immutable:
            return task(*self.args, **self.kwargs)
        return task(*args, *self.args, **{**self.kwargs, **kwargs})


def _call_extra(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return list(value)


def from_dict(data: Mapping[str, Any], app: CanvasApp | None = None) -> Signature:
    """The signature (chain, group, chord or single call) a dict describes.

    Raises:
        ConfigError: not a signature dict, or an unknown ``subtask_type``.
    """
    if not isinstance(data, Mapping) or "task" not in data:
        raise ConfigError(f"not a signature: {str(data)[:200]!r}")
    kind = data.get("subtask_type")
    if not kind:
        return Signature(data, app=app)
    cls = Signature.TYPES.get(str(kind))
    if cls is None:
        raise ConfigError(
            f"workflow type {kind!r} is not supported (signature {data.get('task')!r})"
        )
    return cls.from_dict(data, app=app)


def maybe_signature(data: Mapping[str, Any], app: CanvasApp | None = None) -> Signature:
    """``data`` as a signature (itself when it already is one)."""
    if isinstance(data, Signature):
        if app is not None and data._app is None:
            data._app = app
        return data
    return from_dict(data, app=app)


def signature(
    task: Any,
    args: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    app: CanvasApp | None = None,
    immutable: bool = False,
    **extra_options: Any,
) -> Signature:
    """A signature of ``task`` (a task, a task name, or a signature dict).

    A dict is read as Celery writes it (any workflow type).

    Example:
        >>> signature("proj.add", args=(2, 2), app=app).delay().get()
        4
    """
    if isinstance(task, Mapping):
        return maybe_signature(task, app=app)
    return Signature(task, args, kwargs, options, immutable=immutable, app=app, **extra_options)
