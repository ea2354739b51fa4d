"""What the broker and the workers can tell about a task, by its id (``amqptasks result ID``).

Results travel to the caller's reply queue only (Celery's rpc style): nothing keeps
a finished task's value where a third party could read it. What *can* be read by id:

1. **the workers** (remote control ``query_task``): a call a worker holds is
   ``STARTED`` (running) or ``RECEIVED`` (prefetched, or waiting for its ETA);
2. **the revokes stream** (``amqptasks.revokes``): a revoked id is ``REVOKED``;
3. **the dead-letter queues**: a call that failed for good (raised and was not
   retried, exhausted its retries, was rejected, ran out of time...) waits there
   with its reason, exception and traceback: ``FAILURE`` (``REJECTED`` for a
   rejection).

Anything else is ``PENDING``, as Celery reports any id its backend does not know:
still in a queue, in the delay levels, finished (its result went to the caller),
or never sent.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from amqptasks.control.client import Control
from amqptasks.control.revokes import REVOKES_STREAM
from amqptasks.deadletters import Operator
from amqptasks.exceptions import NotFound
from amqptasks.results import states
from amqptasks.transport import errors
from amqptasks.transport._pika import connection_parameters

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.deadletters import DeadLetter

__all__ = ["Finding", "find_task", "revoked_ids"]

#: Seconds without a new record of the revokes stream after which it was read to its end.
RECORD_WAIT = 1.0
#: Records read from the stream at a time.
STREAM_PREFETCH = 500
#: Celery's name of a call a worker received and has not started.
RECEIVED = "RECEIVED"
#: Celery's name of a call rejected (ours: dead-lettered with reason ``rejected``).
REJECTED = "REJECTED"


@dataclass(frozen=True)
class Finding:
    """What is known of one task id, and where it was learnt."""

    id: str
    state: str
    #: Where it was found: ``worker``, ``revokes``, ``dead-letter queue <name>``, or "".
    source: str = ""
    task: str | None = None
    worker: str | None = None
    #: The exception (``Type: message``) or why the call was dead-lettered or revoked.
    result: str | None = None
    traceback: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _from_worker(task_id: str, answers: list[dict[str, Any]]) -> Finding | None:
    """The first worker that holds ``task_id`` (answers of ``query_task``)."""
    for answer in answers:
        for hostname, held in answer.items():
            if not isinstance(held, dict) or task_id not in held:
                continue
            kind, info = held[task_id]
            info = info if isinstance(info, dict) else {}
            return Finding(
                task_id,
                states.STARTED if kind == "active" else RECEIVED,
                "worker",
                task=info.get("name") or info.get("type"),
                worker=hostname,
                details={"held_as": kind, "time_start": info.get("time_start")},
            )
    return None


def _from_dead_letter(letter: DeadLetter, dlq: str) -> Finding:
    error = f"{letter.exc_type}: {letter.error}" if letter.exc_type else letter.error
    return Finding(
        letter.task_id,
        REJECTED if letter.reason == "rejected" else states.FAILURE,
        f"dead-letter queue {dlq}",
        task=letter.task or None,
        worker=letter.worker or None,
        result=error or letter.reason,
        traceback=letter.traceback or None,
        details={
            "reason": letter.reason,
            "attempts": letter.attempts,
            "dead_lettered_at": letter.dead_lettered_at,
            "args": letter.args_repr,
        },
    )


def revoked_ids(app: App) -> dict[str, dict[str, Any]]:
    """Every id the revokes stream holds revoked now, with its record (read from the start).

    Raises:
        BrokerUnreachable, AuthenticationFailed: no connection.
    """
    url = app.settings.broker
    try:
        connection = pika.BlockingConnection(connection_parameters(url, "amqptasks result"))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    revoked: dict[str, dict[str, Any]] = {}
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(REVOKES_STREAM, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return revoked  # no stream: nothing was ever revoked through it
        channel.basic_qos(prefetch_count=STREAM_PREFETCH)
        deliveries = channel.consume(
            REVOKES_STREAM, arguments={"x-stream-offset": "first"}, inactivity_timeout=RECORD_WAIT
        )
        for method, _properties, body in deliveries:
            if method is None:  # nothing more for RECORD_WAIT seconds: the end
                break
            channel.basic_ack(method.delivery_tag)
            _note_revoke(revoked, body)
        channel.cancel()
    finally:
        if connection.is_open:
            connection.close()
    return revoked


def _note_revoke(revoked: dict[str, dict[str, Any]], body: bytes) -> None:
    try:
        record = json.loads(body)
    except ValueError:
        return
    if not isinstance(record, dict) or not isinstance(record.get("ids"), list):
        return
    expires = record.get("expires")
    if not isinstance(expires, int | float) or expires <= time.time():
        return
    for task_id in record["ids"]:
        revoked[str(task_id)] = record


def find_task(
    app: App,
    task_id: str,
    *,
    task: str | None = None,
    queues: list[str] | None = None,
    timeout: float = 1.0,
) -> Finding:
    """What the workers, the revokes stream and the dead-letter queues say of ``task_id``.

    Args:
        app: The app whose broker, queues and routes are searched.
        task_id: The id.
        task: The task's name: its own queue's dead-letter queue is searched.
        queues: Work queues whose dead-letter queues are searched (default: the
            app's queues, or ``task``'s).
        timeout: Seconds to wait for the workers' answers.
    """
    try:
        control = Control(app.settings.broker)
    except Exception as exc:  # unreachable, refused login: one clear line, not a traceback
        raise errors.connect_error(exc, app.settings.broker) from exc
    with control:
        answers = control.broadcast("query_task", {"ids": [task_id]}, timeout=timeout)
    found = _from_worker(task_id, answers)
    if found is not None:
        return found
    record = revoked_ids(app).get(task_id)
    if record is not None:
        return Finding(
            task_id,
            states.REVOKED,
            "revokes",
            task=task,
            result="revoked",
            details={"revoked_at": record.get("at"), "until": record.get("expires")},
        )
    operator = Operator(app)
    for queue in _search_queues(app, task, queues):
        try:
            dlq = operator.dead_letter_queue(queue)
            letters = operator.peek(queue)
        except NotFound:
            continue
        for letter in letters:
            if letter.task_id == task_id:
                return _from_dead_letter(letter, dlq)
    return Finding(task_id, states.PENDING, task=task)


def _search_queues(app: App, task: str | None, queues: list[str] | None) -> list[str]:
    if queues:
        return list(queues)
    if task is not None:
        known = app.tasks.get(task) if task in app.tasks else None
        route = app.router.resolve(task, task_queue=known.queue if known is not None else None)
        if route.queue is not None:
            return [route.queue.name]
    return app.queue_names()
