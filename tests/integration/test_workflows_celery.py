"""Workflows across Celery 5 and amqptasks workers (#15), on the interop stack.

Reuses ``test_celery_interop``'s fixtures: one amqptasks worker and one Celery
worker per serializer, each on its own queue.
"""

from __future__ import annotations

from typing import Any

import celery

from amqptasks import chain
from tests.integration.test_celery_interop import aapp, capp, stack  # noqa: F401 - fixtures

TIMEOUT = 30.0


def test_a_celery_chain_and_group_run_on_amqptasks_workers(capp: Any, stack: Any) -> None:  # noqa: F811
    queue = stack.amqptasks_queue
    steps = celery.chain(
        capp.signature("interop.add", (1, 1), queue=queue),
        capp.signature("interop.add", (10,), queue=queue),
        capp.signature("interop.add", (100,), queue=queue),
    )
    assert steps.apply_async().get(timeout=TIMEOUT) == 112
    members = celery.group(capp.signature("interop.add", (i, i), queue=queue) for i in range(20))
    assert members.apply_async().get(timeout=TIMEOUT) == [2 * i for i in range(20)]


def test_an_amqptasks_chain_runs_on_a_celery_worker(aapp: Any, stack: Any) -> None:  # noqa: F811
    queue = stack.celery_queue
    steps = chain(
        aapp.add.s(1, 1).set(queue=queue),
        aapp.add.s(10).set(queue=queue),
        aapp.add.si(5, 5).set(queue=queue),
    )
    result = steps.delay()
    assert result.get(timeout=TIMEOUT) == 10
    assert result.parent.get(timeout=TIMEOUT) == 12


def test_a_chain_hops_from_celery_to_amqptasks_and_back(capp: Any, stack: Any) -> None:  # noqa: F811
    steps = celery.chain(
        capp.signature("interop.add", (1, 1), queue=stack.celery_queue),
        capp.signature("interop.add", (10,), queue=stack.amqptasks_queue),
        capp.signature("interop.add", (100,), queue=stack.celery_queue),
    )
    assert steps.apply_async().get(timeout=TIMEOUT) == 112
