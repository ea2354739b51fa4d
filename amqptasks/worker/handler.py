"""What the worker does with one delivery, from decoding to the final ack.

Order of checks: decodable and known (else DLQ) -> expired (REVOKED) -> too
early (back to the delay levels) -> delivered too often (DLQ) -> wait for the
task's rate limit (holding the unacked delivery) -> run within its time limits
-> success (reply, ack) or failure (retry through the delay levels, or DLQ), in
each case publishing (with confirm) before acking, so a crash in between
duplicates a message rather than losing it. A call whose pool process died
(WorkerLost) is requeued, unacked, and counted as a delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from amqptasks import constants, signals
from amqptasks._publish import PreparedCall
from amqptasks.exceptions import AmqptasksError, BrokerError, DecodeError, TaskError, WorkerLost
from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.routing import Route
from amqptasks.topology import delays
from amqptasks.worker import hooks
from amqptasks.worker.acks import AckBatcher, Settlement
from amqptasks.worker.deadletter import dead_letter_message
from amqptasks.worker.decode import decode_delivery
from amqptasks.worker.execution import Outcome, execute, is_expired, make_request, parse_time
from amqptasks.worker.outgoing import delayed_copy, result_message
from amqptasks.worker.pools.base import NotStarted
from amqptasks.worker.ratelimit import RateLimiter
from amqptasks.worker.slots import Slots
from amqptasks.worker.timelimits import resolve_time_limits

if TYPE_CHECKING:
    from amqptasks._client import AioClient
    from amqptasks.app import App
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.protocol.serializers import SerializerInfo
    from amqptasks.task import Task
    from amqptasks.transport.aio import AioPublisher
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.pools.base import ExecutionPool
    from amqptasks.worker.timelimits import TimeLimits

log = get_logger(__name__)

#: A message whose ETA is less than this far ahead runs now (clock skew, rounding).
EARLY_TOLERANCE = 0.5
#: Seconds a counted copy of a redelivered message waits before it is delivered again.
COPY_DELAY = 1.0
#: How much of a traceback goes into a dead-letter header.
TRACEBACK_LIMIT = 8000


class DeliveryHandler:
    """Processes deliveries for one worker (see the module docstring)."""

    def __init__(
        self,
        app: App,
        *,
        hostname: str,
        publisher: AioPublisher,
        republisher: AioClient,
        pool: ExecutionPool,
        concurrency: int,
        result_serializer: SerializerInfo,
        time_limits: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.app = app
        self.hostname = hostname
        self.publisher = publisher
        self.republisher = republisher
        self.pool = pool
        self.result_serializer = result_serializer
        #: The worker's default ``(soft, hard)`` time limits.
        self.time_limits = time_limits
        self.rate_limiter = RateLimiter()
        self.slots = Slots(concurrency)
        #: Plain-function calls go straight to the pool, which queues those its
        #: threads cannot start yet (bounded by the prefetch), rather than wait
        #: for a slot here. Not when the app has ``async def`` tasks: their slots
        #: are what keeps all tasks together within the concurrency.
        self.queue_ahead = pool.queues_ahead and not any(
            app.tasks.get(name).is_async for name in app.tasks
        )
        #: Every settlement goes through here: acks batched per channel, and held
        #: back a little while work waits to start.
        self.acks = AckBatcher(
            hold_while=self._work_waiting,
            hold_limit=concurrency * app.settings.worker_prefetch_multiplier // 2,
        )
        self.slots.on_uncontended = self.acks.stop_holding
        self.stopping = asyncio.Event()
        self.running = 0

    def _work_waiting(self) -> bool:
        """Deliveries wait for a slot, or calls in the pool's queue for a thread."""
        return self.slots.contended() or self.pool.queued > 0

    async def handle(self, message: Delivery, queue: str) -> None:
        """Process one delivery from ``queue``; settles it exactly once."""
        delivery = self.acks.delivered(message)
        try:
            parsed = await decode_delivery(message, self.app.settings)
        except DecodeError as exc:
            await self.dead_letter(delivery, queue, exc.reason, exc)
            return
        except Exception as exc:  # a header of an unexpected type, say
            await self.dead_letter(delivery, queue, constants.REASON_BAD_MESSAGE, exc)
            return
        task = self.app.tasks.find(parsed.task)
        if task is None:
            unknown = self.app.tasks.unknown(parsed.task)
            await self.dead_letter(delivery, queue, constants.REASON_UNKNOWN_TASK, unknown)
            # A caller waiting on the result (Celery replies NotRegistered) learns why.
            await self.reply(parsed, None, Outcome(states.FAILURE, exception=unknown))
            return
        workflow = sorted(k for k, v in dict(parsed.embed).items() if v)
        if workflow:
            # Chains, callbacks and chords are not run yet: keep the message whole in
            # the DLQ rather than run one step and silently drop the rest.
            refused = TaskError(
                f"task {parsed.task} ({parsed.id}) carries {', '.join(workflow)}, "
                f"which amqptasks does not run yet"
            )
            await self.dead_letter(delivery, queue, constants.REASON_UNSUPPORTED, refused)
            await self.reply(parsed, task, Outcome(states.FAILURE, exception=refused))
            return
        try:
            await self._process(delivery, parsed, task, queue)
        except AmqptasksError as exc:
            # Could not publish a retry/reply/dead letter: leave the message to the broker.
            log.error(
                "could not settle a task; it will be delivered again",
                task_id=parsed.id,
                error=str(exc),
            )
            await delivery.requeue()

    async def _process(
        self, delivery: Settlement, parsed: TaskMessage, task: Task[Any, Any], queue: str
    ) -> None:
        if is_expired(parsed):
            log.warning(
                "task expired before it ran; not running it",
                task_id=parsed.id,
                task=parsed.task,
                expires=parsed.expires,
            )
            expired = TaskError(f"task {parsed.task} ({parsed.id}) expired at {parsed.expires}")
            await self.reply(parsed, task, Outcome(states.REVOKED, exception=expired))
            await delivery.ack()
            return
        remaining = _seconds_until(parsed.eta)
        if remaining > EARLY_TOLERANCE:
            # Sent by a producer that expects the worker to hold it (Celery does):
            # hand it to the broker's delay levels instead of holding it here.
            await self._republish(delivery.message, queue, remaining, parsed.retries)
            await delivery.ack()
            return
        if await self._delivered_too_often(delivery, parsed, queue):
            return
        acks_early = (
            task.acks_early if task.acks_early is not None else self.app.settings.task_acks_early
        )
        if task.rate_limit and not await self._rate_limit(task):
            await delivery.requeue()  # shutting down while it waited for its turn
            return
        limits = resolve_time_limits(
            parsed.timelimit, (task.soft_time_limit, task.time_limit), self.time_limits
        )
        if self.queue_ahead and not task.is_async:
            # No slot to wait for: the pool queues what its threads cannot start yet.
            outcome = await self._run(delivery, parsed, task, queue, limits, acks_early)
        else:
            async with self.slots:
                outcome = await self._run(delivery, parsed, task, queue, limits, acks_early)
        if outcome is None:
            return
        if isinstance(outcome.exception, NotStarted):
            await delivery.requeue()  # taken back from the pool's queue at shutdown
            return
        if isinstance(outcome.exception, WorkerLost) and not acks_early:
            # Not run to the end: back to the queue, where it counts as a delivery
            # (see _delivered_too_often), so a task that kills its process ends in the DLQ.
            log.error(
                "task's pool process died; the message goes back to the queue",
                task_id=parsed.id,
                task=parsed.task,
                error=str(outcome.exception),
            )
            await delivery.requeue()
            return
        if outcome.exception is None:
            log.debug("task succeeded", task_id=parsed.id, task=parsed.task)
            hooks.success(task, parsed, outcome)
            await self.reply(parsed, task, outcome)
            await delivery.ack()
            return
        await self._failed(delivery, parsed, task, queue, outcome)

    async def _run(
        self,
        delivery: Settlement,
        parsed: TaskMessage,
        task: Task[Any, Any],
        queue: str,
        limits: TimeLimits,
        acks_early: bool,
    ) -> Outcome | None:
        """Run the call (its slot held, if it needs one); None if it was requeued unstarted."""
        if self.stopping.is_set():
            await delivery.requeue()
            return None
        if acks_early:  # at-most-once: acked before it starts, never redelivered
            await delivery.ack(written=True)
        self.running += 1
        try:
            request = make_request(
                parsed,
                hostname=self.hostname,
                queue=queue,
                redelivered=bool(delivery.message.redelivered),
            )
            started: list[asyncio.Future[None]] = []
            track_started = self.app.settings.task_track_started
            on_start = None
            if track_started or signals.task_prerun.has_receivers(task):

                def on_start() -> None:  # on the loop, as the call starts
                    if track_started:
                        state = Outcome(states.STARTED)
                        started.append(asyncio.ensure_future(self.reply(parsed, task, state)))
                    hooks.prerun(task, request)

            outcome = await execute(task, request, self.pool, limits, on_start)
            for reply in started:  # the STARTED state leaves before the outcome's
                await reply
            if not isinstance(outcome.exception, NotStarted):
                hooks.postrun(task, request, outcome)
            return outcome
        finally:
            self.running -= 1

    async def _failed(
        self,
        delivery: Settlement,
        parsed: TaskMessage,
        task: Task[Any, Any],
        queue: str,
        outcome: Outcome,
    ) -> None:
        assert outcome.exception is not None
        decision = task.retry_policy.decide(outcome.exception, parsed.retries)
        shown = decision.exception or outcome.exception
        error = f"{type(shown).__name__}: {shown}"
        # An acks_early task was acked before it ran; a retry or dead letter is a new
        # message all the same (the ack below is then a no-op).
        if decision.action == "retry":
            log.warning(
                "task failed; retrying",
                task_id=parsed.id,
                task=parsed.task,
                error=error,
                retries=parsed.retries + 1,
                countdown=decision.countdown,
            )
            hooks.retry(task, parsed, shown, decision.countdown)
            await self._republish(delivery.message, queue, decision.countdown, parsed.retries + 1)
            await self.reply(
                parsed, task, Outcome(states.RETRY, exception=shown, traceback=outcome.traceback)
            )
            await delivery.ack()
            return
        log.error(
            "task failed",
            task_id=parsed.id,
            task=parsed.task,
            error=error,
            attempts=parsed.retries + 1,
        )
        log.debug("task traceback", task_id=parsed.id, traceback=outcome.traceback)
        hooks.failure(task, parsed, shown, outcome.traceback)
        await self.reply(
            parsed, task, Outcome(states.FAILURE, exception=shown, traceback=outcome.traceback)
        )
        if decision.action == "dead-letter":
            await self.dead_letter(
                delivery,
                queue,
                decision.reason,
                shown,
                traceback=outcome.traceback,
                attempts=parsed.retries + 1,
            )
        else:
            await delivery.ack()

    async def _rate_limit(self, task: Task[Any, Any]) -> bool:
        """Wait for the task's rate limit to allow a call; False if the worker stops first.

        The delivery stays unacked meanwhile, within the prefetch window: a
        rate-limited message is never requeued or republished to wait.
        """
        delay = self.rate_limiter.reserve(task.name, task.rate_limit)
        if delay <= 0:
            return True
        try:
            await asyncio.wait_for(self.stopping.wait(), delay)
        except asyncio.TimeoutError:
            return True
        self.rate_limiter.cancel(task.name, delay)
        return False

    async def _delivered_too_often(
        self, delivery: Settlement, parsed: TaskMessage, queue: str
    ) -> bool:
        """Cap redeliveries of tasks whose worker died mid-run (poison messages).

        Quorum queues count deliveries themselves (``x-delivery-count``). On
        classic queues a redelivered message is republished to the tail of its
        queue with our own count in a header, since a delivered message cannot
        be changed in place.
        """
        message = delivery.message
        if not message.redelivered:
            return False
        limit = self.app.settings.worker_max_deliveries
        headers: dict[str, Any] = dict(message.headers or {})
        quorum_count = headers.get(constants.HEADER_QUORUM_DELIVERY_COUNT)
        if quorum_count is not None:
            deliveries = int(quorum_count) + 1
            if deliveries <= limit:
                return False
        else:
            deliveries = int(headers.get(constants.HEADER_DELIVERIES, 1)) + 1
            if deliveries <= limit:
                log.warning(
                    "task delivered again after a worker stopped mid-task",
                    task_id=parsed.id,
                    task=parsed.task,
                    deliveries=deliveries,
                )
                # Through the 1 s delay level, not straight back: a copy that came back
                # at once could kill this worker before the original's ack left it, and
                # both would then be redelivered - copies would multiply.
                await self._republish(
                    message,
                    queue,
                    COPY_DELAY,
                    parsed.retries,
                    extra={constants.HEADER_DELIVERIES: deliveries},
                )
                await delivery.ack()
                return True
        await self.dead_letter(
            delivery,
            queue,
            constants.REASON_DELIVERY_LIMIT,
            TaskError(f"delivered {deliveries} times (limit {limit}): its workers keep dying"),
            attempts=deliveries,
        )
        return True

    async def _republish(
        self,
        message: Delivery,
        queue: str,
        countdown: float,
        retries: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Send the message back to ``queue`` after ``countdown`` s (confirmed)."""
        outgoing = delayed_copy(message, queue, countdown, retries, extra)
        route = Route(constants.DEFAULT_EXCHANGE, queue, self.app.router.queue(queue))
        await self.republisher.publish(
            PreparedCall(
                outgoing,
                route,
                False,
                delay=delays.delay_seconds(countdown),
                wait_seconds=countdown,
                prepared_at=time.monotonic(),
            )
        )

    async def reply(
        self, parsed: TaskMessage, task: Task[Any, Any] | None, outcome: Outcome
    ) -> None:
        """Send the task's state to its caller's reply queue (unless results are off)."""
        if not parsed.reply_to or parsed.ignore_result or (task and task.ignore_result):
            return
        reply = result_message(parsed, outcome, self.result_serializer)
        try:
            await self.publisher.publish(reply)
        except BrokerError as exc:
            # The client's reply queue is gone (it expired or was deleted): nobody waits.
            log.warning(
                "result not delivered", task_id=parsed.id, reply_to=parsed.reply_to, error=str(exc)
            )

    async def dead_letter(
        self,
        delivery: Settlement,
        queue: str,
        reason: str,
        exc: BaseException,
        *,
        traceback: str | None = None,
        attempts: int | None = None,
    ) -> None:
        """Move the delivery to ``<queue>.dlq`` with why, then ack it."""
        message = delivery.message
        dlq = self.app.router.queue(queue).dead_letter_queue
        log.error(
            "message dead-lettered",
            queue=queue,
            dead_letter_queue=dlq,
            reason=reason,
            error=str(exc),
            message_id=message.message_id or message.correlation_id,
        )
        if dlq is None:
            await delivery.reject()  # the queue has no DLQ: the operator chose to drop
            return
        extra: dict[str, Any] = {}
        if traceback:
            extra[constants.HEADER_TRACEBACK] = traceback[-TRACEBACK_LIMIT:]
        if attempts is not None:
            extra[constants.HEADER_ATTEMPTS] = attempts
        outgoing = dead_letter_message(
            queue=queue,
            dead_letter_queue=dlq,
            body=message.body,
            headers={**dict(message.headers or {}), **extra},
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            reason=reason,
            error=str(exc),
            worker=self.hostname,
            exc_type=type(exc).__name__,
        )
        try:
            await self.publisher.publish(outgoing)
        except BrokerError as publish_error:
            # Fall back on the queue's own dead-letter exchange (no reason headers).
            log.error(
                "dead-letter publish failed; rejecting to the queue's DLX", error=str(publish_error)
            )
            await delivery.reject()
            return
        await delivery.ack()


def _seconds_until(eta: str | None) -> float:
    when = parse_time(eta)
    if when is None:
        return 0.0
    return (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
