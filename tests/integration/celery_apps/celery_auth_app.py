"""A Celery 5 app that signs and accepts only ``auth`` messages (x509), for docs/security.md.

Configured from the environment: ``AMQPTASKS_BROKER_URL``, ``SECURE_KEY``,
``SECURE_CERT``, ``SECURE_STORE`` (PEM paths) and ``SECURE_LEDGER`` (a file the
``secure.record`` task appends a line to). Run as a worker
(``celery -A tests.integration.celery_apps.celery_auth_app worker``) or with
``python -m tests.integration.celery_apps.celery_auth_app QUEUE WORD`` to send
one signed ``secure.record`` call to QUEUE.
"""

from __future__ import annotations

import os
import sys

from celery import Celery

from tests.integration.celery_apps.celery_app import InteropAMQP, celery_broker_url

app = Celery(
    "secure",
    broker=celery_broker_url(os.environ.get("AMQPTASKS_BROKER_URL", "amqp://localhost//")),
    amqp=InteropAMQP,
)
app.conf.update(
    task_serializer="auth",
    accept_content=["auth"],
    result_accept_content=["json"],
    security_key=os.environ.get("SECURE_KEY"),
    security_certificate=os.environ.get("SECURE_CERT"),
    security_cert_store=os.environ.get("SECURE_STORE"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_ignore_result=True,
)
app.setup_security()


@app.task(name="secure.record")
def record(word: str) -> str:
    with open(os.environ["SECURE_LEDGER"], "a") as ledger:
        ledger.write(f"celery {word}\n")
    return word


if __name__ == "__main__":
    queue, word = sys.argv[1], sys.argv[2]
    app.send_task("secure.record", args=(word,), queue=queue)
    app.close()
