"""Signals: call your functions around publishing and running tasks.

Connect a receiver with a decorator, as in Celery::

    from amqptasks import signals

    @signals.task_failure.connect
    def report(sender, task_id, exception, **kwargs):
        sentry_sdk.capture_exception(exception)

    @signals.before_publish.connect(sender="proj.tasks.charge")  # only for this task
    def stamp(sender, headers, **kwargs):
        headers["x-tenant"] = current_tenant()

Receivers are called with the sender as first argument and keyword arguments
(always accept ``**kwargs``: new ones may be added). They run synchronously on
the thread that sends the signal: publish signals on the caller's thread (or
event loop), task and worker signals on the worker's event loop, so a receiver
must be quick and must not block. A receiver that raises is logged (one error
line, the traceback at debug level) and the others still run: a broken hook
never fails a publish or a task.

==================  ==========  ========================================================
Signal              sender      keyword arguments
==================  ==========  ========================================================
before_publish      task name   task_id, exchange, routing_key, headers, message
after_publish       task name   task_id, exchange, routing_key
task_prerun         Task        task_id, task, args, kwargs, request
task_postrun        Task        task_id, task, args, kwargs, retval, state
task_success        Task        task_id, result
task_failure        Task        task_id, exception, traceback, args, kwargs
task_retry          Task        task_id, reason, countdown, retries
worker_ready        Worker      worker
worker_shutdown     Worker      worker, exit_code
==================  ==========  ========================================================

``before_publish`` is sent once per call (not per publisher retry) before the
message is published; ``headers`` is the message's header dict, which a
receiver may extend. ``after_publish`` is sent once the broker confirmed it (in
``app.batch()``, when the batch ends). ``task_failure`` is sent when a task
failed for good (not retried); a failure that is retried sends ``task_retry``
instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, overload

from amqptasks.logging import get_logger

log = get_logger(__name__)

Receiver = Callable[..., Any]

__all__ = [
    "Signal",
    "after_publish",
    "before_publish",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_retry",
    "task_success",
    "worker_ready",
    "worker_shutdown",
]


class Signal:
    """A named hook point that calls its connected receivers.

    Args:
        name: The signal's name, used in logs.
        providing_args: The keyword arguments :meth:`send` passes (documentation).
    """

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        self._receivers: tuple[tuple[Receiver, object | None], ...] = ()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal {self.name} receivers={len(self._receivers)}>"

    @property
    def receivers(self) -> list[Receiver]:
        """The connected receivers, in the order they are called."""
        return [receiver for receiver, _sender in self._receivers]

    @overload
    def connect(self, receiver: Receiver, /, *, sender: object | None = None) -> Receiver: ...

    @overload
    def connect(
        self, receiver: None = None, /, *, sender: object | None = None
    ) -> Callable[[Receiver], Receiver]: ...

    def connect(
        self, receiver: Receiver | None = None, /, *, sender: object | None = None
    ) -> Receiver | Callable[[Receiver], Receiver]:
        """Call ``receiver`` on every :meth:`send` (or only those from ``sender``).

        ``sender`` may be the sender object or, for task signals, the task's name.

        Usable as ``@signal.connect`` and ``@signal.connect(sender=...)``.
        Connecting the same receiver (for the same sender) twice has no effect.

        Returns:
            ``receiver`` itself, so the decorated function stays usable.
        """

        def register(func: Receiver) -> Receiver:
            if not callable(func):
                raise TypeError(f"{self.name}.connect() needs a callable, got {func!r}")
            with self._lock:
                if (func, sender) not in self._receivers:
                    self._receivers = (*self._receivers, (func, sender))
            return func

        if receiver is not None:
            return register(receiver)
        return register

    def disconnect(self, receiver: Receiver, *, sender: object | None = None) -> bool:
        """Stop calling ``receiver``; returns whether it was connected."""
        with self._lock:
            kept = tuple(item for item in self._receivers if item != (receiver, sender))
            removed = len(kept) != len(self._receivers)
            self._receivers = kept
        return removed

    def has_receivers(self, sender: object) -> bool:
        """True if :meth:`send` from ``sender`` would call any receiver."""
        if not self._receivers:
            return False
        return any(wanted is None or _matches(wanted, sender) for _, wanted in self._receivers)

    def send(self, sender: object, /, **kwargs: Any) -> None:
        """Call every receiver with ``sender`` and ``kwargs``; a failing one is logged."""
        for receiver, wanted in self._receivers:
            if wanted is not None and not _matches(wanted, sender):
                continue
            try:
                receiver(sender, **kwargs)
            except Exception as exc:
                name = getattr(receiver, "__qualname__", repr(receiver))
                log.error(
                    "signal receiver failed",
                    signal=self.name,
                    receiver=name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                log.debug("signal receiver traceback", signal=self.name, exc_info=True)


def _matches(wanted: object, sender: object) -> bool:
    """``sender=`` given to connect matches the sender itself, or a task by its name."""
    if wanted is sender or wanted == sender:
        return True
    return isinstance(wanted, str) and getattr(sender, "name", None) == wanted


#: Before a task message is published (once per call); receivers may add headers.
before_publish = Signal(
    "before_publish", ("task_id", "exchange", "routing_key", "headers", "message")
)
#: After the broker confirmed a task message.
after_publish = Signal("after_publish", ("task_id", "exchange", "routing_key"))
#: In the worker, just before a task runs.
task_prerun = Signal("task_prerun", ("task_id", "task", "args", "kwargs", "request"))
#: In the worker, just after a task ran (whatever the outcome).
task_postrun = Signal("task_postrun", ("task_id", "task", "args", "kwargs", "retval", "state"))
#: In the worker, when a task returned.
task_success = Signal("task_success", ("task_id", "result"))
#: In the worker, when a task failed and will not be retried.
task_failure = Signal("task_failure", ("task_id", "exception", "traceback", "args", "kwargs"))
#: In the worker, when a failed task is sent to be retried.
task_retry = Signal("task_retry", ("task_id", "reason", "countdown", "retries"))
#: When a worker consumes its queues.
worker_ready = Signal("worker_ready", ("worker",))
#: When a worker stopped (warm or cold), before ``Worker.run()`` returns.
worker_shutdown = Signal("worker_shutdown", ("worker", "exit_code"))
