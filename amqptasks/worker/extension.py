"""Worker extensions: the seam where each capability plugs into the delivery lifecycle.

Every delivery goes through the same points, in this order::

    on_received      raw delivery, before decoding          -> Decision | None
    (decode, find the task: undecodable or unknown -> DeadLetter)
    on_decoded       message and task known                  -> Decision | None
    before_run       request and limits known, about to run  -> Decision | None
    on_start         sync, as the call starts                (wants_start says who)
    after_run        outcome known (reverse order)           -> Decision | None
    on_failure       the call raised                         -> Decision | None
    on_retry         a RetryLater is about to be published
    on_dead_letter   a DeadLetter is about to be published
    before_settle    any decision, before it is carried out

A hook that returns a :mod:`decision <amqptasks.worker.decisions>` ends the
delivery there (the first one wins); ``None`` lets it go on. A hook may be an
``async def``, or a plain ``def`` that returns its answer, or returns an
awaitable only when it has to wait (a plain hook costs the delivery no
coroutine; the worker's own rules are written so, see
:class:`~amqptasks.worker.rules.RateLimits`). With no decision after the run, a
success is a ``Finish`` and a failure a ``DeadLetter``.
``on_worker_start`` and ``on_worker_stop`` bracket the worker's life; the
:class:`WorkerContext` given to ``on_worker_start`` lets an extension publish.

Hooks run on the worker's event loop: they must not block (hand blocking work to
``loop.run_in_executor``). A hook that raises before the run dead-letters the
delivery with reason ``worker-error``; a hook that raises after it is logged and
the delivery is settled as decided. Only hooks that a class overrides are called,
so an extension costs nothing at the points it does not use.

Example:
    >>> class Audit(Extension):
    ...     async def on_decoded(self, state):
    ...         if state.message.task == "proj.forbidden":
    ...             return DeadLetter("forbidden", TaskError("not here"))
    ...         return None
    >>> Worker(app, extensions=[Audit()])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from amqptasks.logging import get_logger
from amqptasks.worker.decisions import Decision

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable

    from amqptasks.app import App
    from amqptasks.worker.decisions import DeadLetter, RetryLater
    from amqptasks.worker.options import WorkerOptions
    from amqptasks.worker.sender import Sender
    from amqptasks.worker.state import MessageState

__all__ = ["HOOKS", "Extension", "Hooks", "MaybeDecision", "MaybeWait", "WorkerContext"]

log = get_logger(__name__)

#: What a decision hook returns: a decision, None, or an awaitable of either.
MaybeDecision: TypeAlias = "Decision | Awaitable[Decision | None] | None"
#: What a notification hook returns: None, or an awaitable to wait for.
MaybeWait: TypeAlias = "Awaitable[None] | None"

#: The lifecycle points, in the order a delivery meets them.
HOOKS = (
    "on_received",
    "on_decoded",
    "before_run",
    "on_start",
    "after_run",
    "on_failure",
    "on_retry",
    "on_dead_letter",
    "before_settle",
)


@dataclass(frozen=True)
class WorkerContext:
    """What an extension can use while the worker runs."""

    app: App
    options: WorkerOptions
    #: The worker's node name (``worker@host``).
    hostname: str
    #: Publishes replies, copies and dead letters (confirmed).
    sender: Sender
    #: Set when the worker begins to stop: long waits should end then.
    stopping: asyncio.Event


class Extension:
    """Base class of worker extensions: every hook does nothing (see the module docstring).

    Override the hooks you need. Decision hooks return a
    :class:`~amqptasks.worker.decisions.Decision` to end the delivery, or None.
    """

    async def on_worker_start(self, worker: WorkerContext) -> None:
        """The worker connected and is about to consume."""

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        """The worker stopped consuming and finished (or abandoned) its tasks."""

    def on_received(self, state: MessageState) -> MaybeDecision:
        """A delivery arrived; only ``state.delivery`` is known (nothing decoded yet)."""
        return None

    def on_decoded(self, state: MessageState) -> MaybeDecision:
        """``state.message`` and ``state.task`` are known."""
        return None

    def before_run(self, state: MessageState) -> MaybeDecision:
        """About to hand the call to the pool; may wait (a rate limit, say)."""
        return None

    #: Whether the task body waits until :meth:`on_start` ran (in the threads pool a
    #: round trip to the loop per call). An extension that only notes the start sets
    #: False: its ``on_start`` then runs soon after the body started (within 20 ms),
    #: still before the call's outcome is handled. One that only needs the time the
    #: call started needs no ``on_start``: every pool writes ``state.started_at``.
    start_holds_body: bool = True
    #: Whether :meth:`on_start` only records (an append to a deque, an attribute set)
    #: and is thread-safe: the threads pool then runs it in the thread that starts the
    #: call, just before the body, with no turn of the loop at all. It may also run on
    #: the loop (other pools, or with a starter that is not so).
    start_in_any_thread: bool = False

    def wants_start(self, state: MessageState) -> bool:
        """Whether :meth:`on_start` should be called for this call (it costs a loop turn)."""
        return False

    def on_start(self, state: MessageState) -> None:
        """The call starts now (sync, on the loop; the task body waits for it unless
        :attr:`start_holds_body` is False)."""

    def after_run(self, state: MessageState) -> MaybeDecision:
        """The call ended; ``state.outcome`` says how."""
        return None

    def on_failure(self, state: MessageState) -> MaybeDecision:
        """The call raised ``state.outcome.exception``: retry, dead-letter, or None."""
        return None

    def on_retry(self, state: MessageState, decision: RetryLater) -> MaybeWait:
        """The call is about to be published again as its next attempt."""

    def on_dead_letter(self, state: MessageState, decision: DeadLetter) -> MaybeWait:
        """The message is about to go to its queue's dead-letter queue."""

    def before_settle(self, state: MessageState, decision: Decision) -> MaybeWait:
        """``decision`` is about to be carried out (replies, signals, events)."""


def overrides(extension: Extension, hook: str) -> bool:
    """True when ``extension``'s class defines ``hook`` itself (not the no-op default)."""
    return getattr(type(extension), hook) is not getattr(Extension, hook)


class Hooks:
    """The extensions' hooks at each point, in calling order: only those overridden."""

    def __init__(self, extensions: list[Extension]) -> None:
        def at(name: str) -> list[Extension]:
            return [ext for ext in extensions if overrides(ext, name)]

        self.on_received = [ext.on_received for ext in at("on_received")]
        self.on_decoded = [ext.on_decoded for ext in at("on_decoded")]
        self.before_run = [ext.before_run for ext in at("before_run")]
        #: The extensions with an ``on_start`` (each says per call whether it wants it).
        self.starters = at("on_start")
        self.after_run = [ext.after_run for ext in reversed(at("after_run"))]
        self.on_failure = [ext.on_failure for ext in at("on_failure")]
        self.on_retry = [ext.on_retry for ext in at("on_retry")]
        self.on_dead_letter = [ext.on_dead_letter for ext in at("on_dead_letter")]
        self.before_settle = [ext.before_settle for ext in at("before_settle")]


def consult(hooks: list[Any], state: MessageState) -> MaybeDecision:
    """The first decision of ``hooks`` (None if none decides), or, when a hook has to
    wait, an awaitable of it: plain hooks cost no coroutine."""
    for index, hook in enumerate(hooks):
        decided = hook(state)
        if decided is None or isinstance(decided, Decision):
            if decided is not None:
                return decided
            continue
        return _consult_after(decided, hooks[index + 1 :], state)
    return None


async def _consult_after(
    waiting: Awaitable[Decision | None], rest: list[Any], state: MessageState
) -> Decision | None:
    decided = await waiting
    if decided is not None:
        return decided
    return await resolved(consult(rest, state))


async def resolved(decided: MaybeDecision) -> Decision | None:
    """What :func:`consult` answered, once any waiting is over."""
    if decided is None or isinstance(decided, Decision):
        return decided
    return await decided


def describe(exc: BaseException) -> str:
    """``Type: text`` of an exception, for a one-line log (no traceback, no locals)."""
    return f"{type(exc).__name__}: {exc}"


def hook_failed(hook: Any, state: MessageState, exc: Exception) -> None:
    """A hook that does not decide raised: logged in one line; the delivery goes on."""
    log.error(
        "worker extension failed",
        hook=getattr(hook, "__qualname__", repr(hook)),
        task_id=state.task_id,
        error=describe(exc),
    )
