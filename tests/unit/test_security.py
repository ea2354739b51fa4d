"""Message security, pure parts (#18): canonical encoding across both clients' field tables,
signatures, the replay guard, encryption, keys, and Celery's auth format against Celery's own
code."""

from __future__ import annotations

import datetime as dt
import os
import stat
from typing import TYPE_CHECKING, Any

import pamqp.decode
import pamqp.encode
import pytest
from celery.security.certificate import Certificate, CertStore
from celery.security.key import PrivateKey
from celery.security.serialization import SecureSerializer
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from amqptasks import App, BadSignature, ConfigError
from amqptasks.cli import cli
from amqptasks.protocol.envelope import build_task_message
from amqptasks.security import celery_auth, encryption
from amqptasks.security.canonical import signing_input
from amqptasks.security.keys import (
    generate_ed25519,
    generate_encryption_key,
    generate_hmac_secret,
    signing_key,
    verify_key,
)
from amqptasks.security.opening import opener_for
from amqptasks.security.replay import ReplayGuard
from amqptasks.security.sealing import sealer_for
from amqptasks.security.signing import Signer, Verified, Verifier
from amqptasks.transport import _fielddecode, _fieldtable

if TYPE_CHECKING:
    from pathlib import Path

HEADERS: dict[str, Any] = {
    "lang": "py",
    "task": "proj.add",
    "id": "5f1c",
    "eta": "2026-01-01T00:00:00+00:00",
    "expires": None,
    "retries": 3,
    "timelimit": [None, 30.5],
    "group": None,
    "root_id": "r",
    "parent_id": "p",
    "ignore_result": False,
    "stamps": {"b": [1, 2], "a": "x"},
    "big": 2**40,
    "x-death": [{"count": 1}],
}


def _amqptasks_round_trip(headers: dict[str, Any]) -> dict[str, Any]:
    pieces: list[bytes] = []
    _fieldtable.encode_table(pieces, headers)
    decoded, _ = _fielddecode.decode_table(b"".join(pieces), 0)
    return dict(decoded)


def _pamqp_round_trip(headers: dict[str, Any]) -> dict[str, Any]:
    raw = pamqp.encode.field_table(headers)
    _size, decoded = pamqp.decode.field_table(raw)
    return dict(decoded)


def _input(headers: dict[str, Any]) -> bytes:
    props = {"content_type": "application/json", "content_encoding": "utf-8"}
    return signing_input("k", 1, b"[[], {}, {}]", headers, props)


@pytest.mark.parametrize(
    "round_trip", [_amqptasks_round_trip, _pamqp_round_trip], ids=["amqptasks", "aio-pika"]
)
def test_the_signed_bytes_survive_each_clients_field_table(round_trip: Any) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "timelimit"}
    assert _input(round_trip(headers)) == _input(headers)
    # floats: amqptasks' encoder writes doubles; pamqp too
    with_float = {**headers, "timelimit": [None, 30.5]}
    assert _input(round_trip(with_float)) == _input(with_float)


def test_bytes_and_text_sign_alike_and_x_headers_are_not_signed() -> None:
    as_bytes = {**HEADERS, "task": b"proj.add"}
    assert _input(as_bytes) == _input(HEADERS)
    assert _input({**HEADERS, "x-amqptasks-deliveries": 2}) == _input(HEADERS)
    assert _input({**HEADERS, "retries": 4}) != _input(HEADERS)
    assert _input({**HEADERS, "retries": True}) != _input({**HEADERS, "retries": 1})


def _message(**headers: Any) -> Any:
    return build_task_message(
        task="proj.add",
        task_id="t-1",
        args=(1, 2),
        kwargs={},
        exchange="",
        routing_key="q",
        reply_to="replies",
        extra_headers=headers or None,
    )


@pytest.mark.parametrize("kind", ["ed25519", "hmac"])
def test_a_signature_verifies_and_any_change_breaks_it(kind: str) -> None:
    material = generate_ed25519()[0] if kind == "ed25519" else generate_hmac_secret()
    key = signing_key("k1", material)
    signed = Signer(key).sign(_message())
    verifier = Verifier({"k1": key.verify_key()})

    def check(message: Any, body: bytes | None = None, **props: Any) -> Verified:
        return verifier.verify(
            body if body is not None else message.body,
            message.headers,
            content_type=props.get("content_type", message.content_type),
            content_encoding=message.content_encoding,
            correlation_id=message.correlation_id,
            reply_to=props.get("reply_to", message.reply_to),
        )

    assert check(signed).key_id == "k1"
    for name, value in (("task", "proj.evil"), ("eta", "2030-01-01"), ("retries", 9)):
        with pytest.raises(BadSignature, match="altered"):
            check(type(signed)(**{**_fields(signed), "headers": {**signed.headers, name: value}}))
    with pytest.raises(BadSignature, match="altered"):
        check(signed, body=signed.body.replace(b"1", b"7"))
    with pytest.raises(BadSignature, match="altered"):
        check(signed, reply_to="attacker")
    with pytest.raises(BadSignature, match="unknown key id 'k1'"):
        Verifier({"k2": key.verify_key()}).verify(
            signed.body,
            signed.headers,
            content_type=signed.content_type,
            content_encoding=signed.content_encoding,
            correlation_id=signed.correlation_id,
            reply_to=signed.reply_to,
        )


def _fields(message: Any) -> dict[str, Any]:
    return {name: getattr(message, name) for name in message.__dataclass_fields__}


def test_a_public_key_cannot_sign_and_errors_show_no_key(tmp_path: Path) -> None:
    private, public = generate_ed25519()
    (tmp_path / "k.pub").write_bytes(public)
    with pytest.raises(ConfigError, match="public key; signing needs the private key"):
        signing_key("k", f"file:{tmp_path / 'k.pub'}")
    assert verify_key("k", f"file:{tmp_path / 'k.pub'}").algorithm == "ed25519"
    with pytest.raises(ConfigError, match="environment variable NOPE_KEY is not set"):
        signing_key("k", "env:NOPE_KEY")
    with pytest.raises(ConfigError, match="not a plain string") as caught:
        signing_key("k", "hunter2hunter2hunter2")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        signing_key("k", b"short")
    assert signing_key("k", lambda: private).algorithm == "ed25519"


def test_the_replay_guard_refuses_a_second_delivery_and_stale_signatures() -> None:
    guard = ReplayGuard(window=60, skew=5, size=2)
    now = 1_000_000.0
    seen = Verified("k", int(now * 1000), "sig-a")
    guard.check(seen, now=now)
    with pytest.raises(BadSignature, match="delivered before") as caught:
        guard.check(seen, now=now + 1)
    assert caught.value.reason == "replayed"
    guard.check(seen, now=now + 1, redelivered=True)  # given back by the broker: fine
    with pytest.raises(BadSignature, match="outside the replay window") as caught:
        guard.check(Verified("k", int(now * 1000), "sig-b"), now=now + 61)
    assert caught.value.reason == "replayed"
    # a message delayed past the window is fresh from its ETA on
    eta = dt.datetime.fromtimestamp(now + 3600, dt.timezone.utc).isoformat()
    guard.check(Verified("k", int(now * 1000), "sig-c"), eta=eta, now=now + 3620)
    with pytest.raises(BadSignature, match="future") as caught:
        guard.check(Verified("k", int((now + 60) * 1000), "sig-d"), now=now)
    assert caught.value.reason == "bad-signature"
    for i in range(5):  # bounded memory
        guard.check(Verified("k", int(now * 1000), f"fill-{i}"), now=now)
    assert len(guard) == 2


def test_encryption_round_trips_and_refuses_a_changed_byte_or_unknown_key() -> None:
    key = os.urandom(32)
    sealed = encryption.Cipher("e1", key).seal(b'[["secret"], {}, {}]', "application/json", "utf-8")
    assert b"secret" not in sealed
    opened = encryption.Decipher({"e1": key}).open(sealed)
    assert opened == (b'[["secret"], {}, {}]', "application/json", "utf-8")
    changed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(BadSignature, match="altered"):
        encryption.Decipher({"e1": key}).open(changed)
    with pytest.raises(BadSignature, match="unknown key id 'e1'"):
        encryption.Decipher({"e2": key}).open(sealed)


def test_a_worker_opens_what_a_producer_sealed(tmp_path: Path) -> None:
    private, public = generate_ed25519()
    (tmp_path / "p.key").write_bytes(private)
    (tmp_path / "e.aes").write_bytes(generate_encryption_key())
    producer = App(
        "p",
        security_signing_key_id="p",
        security_signing_key=f"file:{tmp_path / 'p.key'}",
        security_encryption_keys={"e": f"file:{tmp_path / 'e.aes'}"},
        security_encryption_key_id="e",
    )
    worker = App(
        "w",
        security_verify_keys={"p": public},
        security_encryption_keys={"e": f"file:{tmp_path / 'e.aes'}"},
    )
    sealer = sealer_for(producer.settings)
    assert sealer is not None
    message = sealer.seal(_message())
    assert message.headers["argsrepr"] == "<encrypted>"
    opener = opener_for(worker.settings)
    assert opener.mode == "require"
    opened = opener.open(
        message.body,
        message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        redelivered=False,
    )
    assert opened.trust == "signed"
    assert opened.body == _message().body
    assert opened.content_type == "application/json"


def _celery_pki(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1234)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_celery_auth_bodies_are_read_and_written_as_celery_does(tmp_path: Path) -> None:
    key_path, cert_path = _celery_pki(tmp_path)
    store = CertStore()
    store.add_cert(Certificate(cert_path.read_text()))
    theirs = SecureSerializer(
        PrivateKey(key_path.read_text()), Certificate(cert_path.read_text()), store
    )
    data = [[2, 3], {}, {"callbacks": None}]
    # Celery signs, amqptasks verifies
    ours = celery_auth.CeleryCertStore(str(cert_path), "sha256")
    body, content_type, _ = ours.open(theirs.serialize(data).encode())
    assert content_type == "application/json"
    assert body == b'[[2, 3], {}, {"callbacks": null}]'
    # amqptasks signs, Celery verifies
    wrapped = celery_auth.CeleryAuthSigner(str(key_path), str(cert_path), None, "sha256").wrap(
        b"[[5, 6], {}, {}]", "application/json", "utf-8"
    )
    assert theirs.deserialize(wrapped.decode()) == [[5, 6], {}, {}]
    # a changed body is refused
    altered = theirs.serialize([[2, 4], {}, {}]).encode()
    parts = __import__("base64").b64decode(altered).split(b"\x00\x01")
    parts[4] = parts[4].replace(b"4", b"5")
    forged = __import__("base64").b64encode(b"\x00\x01".join(parts))
    with pytest.raises(BadSignature, match="altered"):
        ours.open(forged)


def test_keys_generate_writes_private_parts_owner_only(tmp_path: Path) -> None:
    runner = CliRunner()
    for kind, key_id in (("ed25519", "p1"), ("hmac", "h1"), ("aes", "a1")):
        result = runner.invoke(
            cli, ["keys", "generate", "--kind", kind, "--id", key_id, "--out", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"p1.key": 0o600, "p1.pub": 0o644, "h1.secret": 0o600, "a1.aes": 0o600}
    assert signing_key("p1", f"file:{tmp_path / 'p1.key'}").algorithm == "ed25519"
    assert signing_key("h1", f"file:{tmp_path / 'h1.secret'}").algorithm == "hmac-sha256"
    secret = (tmp_path / "h1.secret").read_text().strip()
    assert secret not in result.output
    again = runner.invoke(cli, ["keys", "generate", "--id", "p1", "--out", str(tmp_path)])
    assert again.exit_code != 0 and "never overwritten" in again.output


def test_settings_say_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="needs security_signing_key_id"):
        App("x", security_signing_key=b"0123456789abcdef0123")
    with pytest.raises(ConfigError, match="security_verify must be one of"):
        App("x", security_verify="maybe")
    with pytest.raises(ConfigError, match="needs security_key and security_certificate"):
        App("x", security_celery_auth=True)
    assert "0123456789abcdef" not in repr(
        App("x", security_signing_key=b"0123456789abcdef0123", security_signing_key_id="k").settings
    )
