"""Signed and encrypted task messages on a real node (#18): refusals, replays, rotation,
retries, encryption, signed results, and Celery's ``auth`` serializer both ways.

Workers run in this process (a thread with its own event loop) on the session broker;
producers are separate apps with their own keys, as on a real estate. Messages are
tampered with, replayed and read with raw pika, as an attacker with vhost access would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from amqptasks import App, BadSignature, Worker, chain
from amqptasks.deadletters import Operator
from amqptasks.security.keys import generate_ed25519, generate_encryption_key
from tests.integration.conftest import REPO, cli_env, dlq_headers, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

CELERY_AUTH_APP = "tests.integration.celery_apps.celery_auth_app"
#: What the tasks ran, in order: (task, word, attempt).
RAN: list[tuple[str, str, int]] = []
_lock = threading.Lock()


def _ran(word: str) -> list[tuple[str, str, int]]:
    with _lock:
        return [entry for entry in RAN if entry[1] == word]


def make_app(name: str, broker_url: str, **settings: Any) -> App:
    """An app with the test tasks, and ``settings`` (its keys)."""
    app = App(name, broker_url=broker_url, **settings)

    @app.task(name="secure.record", bind=True)
    def record(self: Any, word: str) -> str:
        with _lock:
            RAN.append(("record", word, self.request.retries))
        return word.upper()

    @app.task(name="secure.flaky", bind=True, max_retries=3)
    def flaky(self: Any, word: str) -> str:
        with _lock:
            RAN.append(("flaky", word, self.request.retries))
        if self.request.retries == 0:
            self.retry(countdown=1)
        return word

    return app


@contextlib.contextmanager
def running(app: App, queue: str) -> Iterator[Worker]:
    """A worker of ``app`` consuming ``queue`` on a loop of its own, while the block runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    worker = Worker(app, queues=[queue], concurrency=2)
    asyncio.run_coroutine_threadsafe(worker.start(), loop).result(30)
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        asyncio.run_coroutine_threadsafe(worker._shutdown(), loop).result(30)
        asyncio.run_coroutine_threadsafe(app.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Key files: producer keys old and new, the worker's own key, an AES key."""
    folder = tmp_path_factory.mktemp("keys")
    found: dict[str, str] = {}
    for key_id in ("old", "new", "worker"):
        private, public = generate_ed25519()
        (folder / f"{key_id}.key").write_bytes(private)
        (folder / f"{key_id}.pub").write_bytes(public)
        found[key_id] = f"file:{folder / key_id}.key"
        found[f"{key_id}.pub"] = f"file:{folder / key_id}.pub"
    (folder / "e1.aes").write_bytes(generate_encryption_key())
    found["e1"] = f"file:{folder / 'e1.aes'}"
    return found


def worker_settings(keys: dict[str, str], *, accept: tuple[str, ...] = ("old", "new")) -> dict:
    return {
        "security_signing_key_id": "worker",
        "security_signing_key": keys["worker"],
        "security_verify_keys": {key_id: keys[f"{key_id}.pub"] for key_id in accept},
        "security_encryption_keys": {"e1": keys["e1"]},
    }


def producer(broker_url: str, keys: dict[str, str], key_id: str = "new", **more: Any) -> App:
    return make_app(
        f"producer-{key_id}",
        broker_url,
        security_signing_key_id=key_id,
        security_signing_key=keys[key_id],
        **more,
    )


def take(channel: Any, queue: str) -> tuple[pika.BasicProperties, bytes]:
    """The next message of ``queue`` (acked: it is the attacker's now)."""
    method, properties, body = wait_for(
        lambda: (lambda got: got if got[0] is not None else None)(channel.basic_get(queue)),
        what=f"a message in {queue}",
    )
    channel.basic_ack(method.delivery_tag)
    return properties, body


def put(channel: Any, queue: str, properties: pika.BasicProperties, body: bytes) -> None:
    channel.basic_publish("", queue, body, properties, mandatory=True)


def copy_of(properties: pika.BasicProperties, **headers: Any) -> pika.BasicProperties:
    changed = pika.BasicProperties(**{k: v for k, v in vars(properties).items()})
    changed.headers = {**(properties.headers or {}), **headers}
    return changed


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Each record's message and fields (structlog passes them as the record's extras)."""
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def reasons(broker_url: str, queue: str, count: int) -> dict[str, str]:
    """Task id -> dead-letter reason, once ``count`` dead letters are there."""
    found = wait_for(
        lambda: (lambda h: h if len(h) >= count else None)(dlq_headers(broker_url, f"{queue}.dlq")),
        what=f"{count} dead letters",
    )
    return {str(h.get("id")): str(h["x-amqptasks-reason"]) for h in found}


def test_tampered_messages_are_refused_and_a_replay_runs_once(
    broker_url: str,
    keys: dict[str, str],
    queue_name: str,
    amqp: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = producer(broker_url, keys)
    worker_app = make_app("worker", broker_url, **worker_settings(keys))
    word = uuid.uuid4().hex[:8]
    signed = sender.tasks.get("secure.record").apply_async((word,), queue=queue_name)
    properties, body = take(amqp, queue_name)
    assert properties.headers["x-amqptasks-key-id"] == "new"

    def forged(suffix: str, **headers: Any) -> pika.BasicProperties:
        return copy_of(properties, id=f"{signed.id}-{suffix}", **headers)

    eta = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    put(amqp, queue_name, forged("task", task="secure.flaky"), body)  # another task
    put(amqp, queue_name, forged("eta", eta=eta), body)  # another time
    put(amqp, queue_name, forged("args"), body.replace(word.encode(), b"mallory"))  # args
    put(amqp, queue_name, forged("body"), body + b" ")  # any byte of the body
    unsigned = copy_of(properties, id=f"{signed.id}-unsigned")
    for name in ("x-amqptasks-signature", "x-amqptasks-key-id", "x-amqptasks-signed-at"):
        del unsigned.headers[name]
    put(amqp, queue_name, unsigned, body)
    put(amqp, queue_name, forged("unknown-key", **{"x-amqptasks-key-id": "mallory"}), body)
    put(amqp, queue_name, properties, body)  # the genuine message...
    put(amqp, queue_name, properties, body)  # ...and a replay of it

    with running(worker_app, queue_name):
        assert signed.get(timeout=20) == word.upper()
        dead = reasons(broker_url, queue_name, 7)
    assert _ran(word) == [("record", word, 0)]  # once, and nothing forged ran
    assert _ran("mallory") == []
    assert dead == {
        f"{signed.id}-task": "bad-signature",
        f"{signed.id}-eta": "bad-signature",
        f"{signed.id}-args": "bad-signature",
        f"{signed.id}-body": "bad-signature",
        f"{signed.id}-unsigned": "bad-signature",
        f"{signed.id}-unknown-key": "bad-signature",
        signed.id: "replayed",
    }
    # The refusals are logged with their reasons, never with a signature or a key.
    logged = everything_logged(caplog)
    assert "'reason': 'bad-signature'" in logged and "'reason': 'replayed'" in logged
    assert properties.headers["x-amqptasks-signature"] not in logged
    assert Path(keys["new"][len("file:") :]).read_text().splitlines()[1] not in logged
    sender.close()


def test_a_retried_a_delayed_and_a_chained_signed_task_run(
    broker_url: str, keys: dict[str, str], queue_name: str
) -> None:
    sender = producer(
        broker_url,
        keys,
        security_encryption_keys={"e1": keys["e1"]},
        security_encryption_key_id="e1",
    )
    worker_app = make_app("worker", broker_url, **worker_settings(keys))
    word = uuid.uuid4().hex[:8]
    record = sender.tasks.get("secure.record")
    with running(worker_app, queue_name):
        retried = sender.tasks.get("secure.flaky").apply_async((word,), queue=queue_name)
        delayed = record.apply_async((f"{word}-later",), queue=queue_name, countdown=2)
        steps = chain(
            record.s(f"{word}-step").set(queue=queue_name),
            record.s().set(queue=queue_name),
        ).apply_async()
        assert retried.get(timeout=20) == word
        assert delayed.get(timeout=20) == f"{word}-later".upper()
        assert steps.get(timeout=20) == f"{word}-step".upper()
    # The retry (of an encrypted message) and the chain's second step were published,
    # and signed, by the worker with its own key.
    assert _ran(word) == [("flaky", word, 0), ("flaky", word, 1)]
    assert _ran(f"{word}-step".upper()) == [("record", f"{word}-step".upper(), 0)]
    assert dlq_headers(broker_url, f"{queue_name}.dlq") == []
    sender.close()


def test_rotating_the_signing_key_loses_nothing_in_flight(
    broker_url: str, keys: dict[str, str], queue_name: str, amqp: Any
) -> None:
    old, new = producer(broker_url, keys, "old"), producer(broker_url, keys, "new")
    word = uuid.uuid4().hex[:8]
    # Step 1: producers move from old to new while messages of both wait in the queue.
    first = [old.send_task("secure.record", (f"{word}-o{i}",), queue=queue_name) for i in range(3)]
    first += [new.send_task("secure.record", (f"{word}-n{i}",), queue=queue_name) for i in range(3)]
    with running(make_app("worker", broker_url, **worker_settings(keys)), queue_name):
        assert sorted(r.get(timeout=20) for r in first) == sorted(
            f"{word}-{k}{i}".upper() for k in "on" for i in range(3)
        )
    # Step 2: workers drop the old key; a straggler signed with it is refused, not lost.
    straggler = old.send_task("secure.record", (f"{word}-late",), queue=queue_name)
    later = new.send_task("secure.record", (f"{word}-n9",), queue=queue_name)
    only_new = worker_settings(keys, accept=("new",))
    with running(make_app("worker", broker_url, **only_new), queue_name):
        assert later.get(timeout=20) == f"{word}-n9".upper()
        with pytest.raises(BadSignature, match="unknown key id 'old'"):
            straggler.get(timeout=20)
        assert reasons(broker_url, queue_name, 1) == {straggler.id: "bad-signature"}
        assert _ran(f"{word}-late") == []
        # Replayed from the DLQ by an operator holding the new key: signed again, it runs.
        assert Operator(new).replay(queue_name) == 1
        wait_for(lambda: _ran(f"{word}-late"), what="the replayed straggler to run")
    assert dlq_headers(broker_url, f"{queue_name}.dlq") == []
    old.close()
    new.close()


def test_encrypted_arguments_are_not_readable_in_the_queue_and_the_task_runs(
    broker_url: str, keys: dict[str, str], queue_name: str, amqp: Any
) -> None:
    sender = producer(
        broker_url,
        keys,
        security_encryption_keys={"e1": keys["e1"]},
        security_encryption_key_id="e1",
    )
    secret = f"card-{uuid.uuid4().hex}"
    result = sender.tasks.get("secure.record").apply_async((secret,), queue=queue_name)
    method, properties, body = wait_for(
        lambda: (lambda got: got if got[0] is not None else None)(amqp.basic_get(queue_name)),
        what="the encrypted message",
    )
    amqp.basic_nack(method.delivery_tag, requeue=True)  # looked at, left in the queue
    assert secret.encode() not in body
    assert secret not in json.dumps({k: str(v) for k, v in properties.headers.items()})
    assert properties.content_type == "application/x-amqptasks-encrypted"
    assert properties.headers["task"] == "secure.record"  # routing headers stay clear
    assert properties.headers["argsrepr"] == "<encrypted>"
    with running(make_app("worker", broker_url, **worker_settings(keys)), queue_name):
        assert result.get(timeout=20) == secret.upper()
        # A dead letter keeps the body as it came: encrypted.
        sender.send_task("secure.nope", (secret,), queue=queue_name, ignore_result=True)
        method, _properties, dead_body = wait_for(
            lambda: (lambda got: got if got[0] is not None else None)(
                amqp.basic_get(f"{queue_name}.dlq")
            ),
            what="the dead letter",
        )
    assert secret.encode() not in dead_body
    assert _ran(secret) == [("record", secret, 0)]
    sender.close()


def test_log_mode_runs_unsigned_messages_and_results_can_be_verified(
    broker_url: str,
    keys: dict[str, str],
    queue_name: str,
    amqp: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unsigned_sender = make_app("plain", broker_url)
    word = uuid.uuid4().hex[:8]
    migrating = {**worker_settings(keys), "security_verify": "log"}
    checking = producer(
        broker_url,
        keys,
        security_verify_results=True,
        security_verify_keys={"worker": keys["worker.pub"]},
    )
    with running(make_app("worker", broker_url, **migrating), queue_name):
        assert (
            unsigned_sender.send_task("secure.record", (word,), queue=queue_name).get(timeout=20)
            == word.upper()
        )
        assert "ran an unsigned message (security_verify=log)" in caplog.text
        # The worker signs its results; a client that checks them accepts them...
        signed = checking.send_task("secure.record", (f"{word}-r",), queue=queue_name)
        assert signed.get(timeout=20) == f"{word}-r".upper()
    # ...and refuses a forged one sent straight to its reply queue.
    pending = checking.send_task("secure.record", ("never",), queue=f"{queue_name}-idle")
    forged = json.dumps({"task_id": pending.id, "status": "SUCCESS", "result": "FORGED"})
    amqp.basic_publish(
        "",
        checking._client().reply_queue,
        forged.encode(),
        pika.BasicProperties(content_type="application/json", correlation_id=pending.id),
    )
    with pytest.raises(BadSignature, match="refused"):
        pending.get(timeout=20)
    amqp.queue_delete(f"{queue_name}-idle")
    amqp.queue_delete(f"{queue_name}-idle.dlq")
    for app in (unsigned_sender, checking):
        app.close()


# -- Celery's auth serializer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def x509_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An RSA key and a self-signed certificate (the Celery estate's), and a store of it."""
    folder = tmp_path_factory.mktemp("x509")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "celery-signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    paths = {"key": folder / "signer.key", "cert": folder / "signer.pem", "store": folder / "store"}
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["store"].mkdir()
    (paths["store"] / "signer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _celery_env(broker_url: str, files: dict[str, Path], ledger: Path) -> dict[str, str]:
    env = cli_env(broker_url)
    env.update(
        SECURE_KEY=str(files["key"]),
        SECURE_CERT=str(files["cert"]),
        SECURE_STORE=str(files["store"]),
        SECURE_LEDGER=str(ledger),
    )
    return env


def test_celery_signed_messages_run_on_an_amqptasks_worker(
    broker_url: str, x509_files: dict[str, Path], queue_name: str, tmp_path: Path
) -> None:
    word = uuid.uuid4().hex[:8]
    worker_app = make_app("worker", broker_url, security_cert_store=str(x509_files["store"]))
    env = _celery_env(broker_url, x509_files, tmp_path / "ledger")
    with running(worker_app, queue_name):
        subprocess.run(
            [sys.executable, "-m", CELERY_AUTH_APP, queue_name, word],
            cwd=REPO,
            env=env,
            check=True,
            timeout=60,
        )
        wait_for(lambda: _ran(word), what="the Celery-signed call to run")
    assert _ran(word) == [("record", word, 0)]


def test_an_amqptasks_producer_signs_so_a_celery_auth_worker_accepts_it(
    broker_url: str, x509_files: dict[str, Path], queue_name: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    env = _celery_env(broker_url, x509_files, ledger)
    log = tmp_path / "celery.log"
    command = [sys.executable, "-m", "celery", "-A", CELERY_AUTH_APP, "worker", "-P", "solo"]
    command += ["-Q", queue_name, "-n", f"secure-{queue_name}@%h", "-l", "info"]
    with log.open("wb") as out:
        celery = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: " ready." in log.read_text(), timeout=60, what="the Celery worker")
        sender = make_app(
            "to-celery",
            broker_url,
            security_celery_auth=True,
            security_key=str(x509_files["key"]),
            security_certificate=str(x509_files["cert"]),
            task_ignore_result=True,
        )
        word = uuid.uuid4().hex[:8]
        sender.send_task("secure.record", (word,), queue=queue_name)
        wait_for(
            lambda: ledger.exists() and ledger.read_text() == f"celery {word}\n",
            what="the Celery worker to run it",
        )
        sender.close()
    finally:
        celery.terminate()
        celery.wait(20)
    assert "Unable to deserialize" not in log.read_text()
