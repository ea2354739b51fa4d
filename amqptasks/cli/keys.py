"""``amqptasks keys generate``: new signing or encryption keys, written with safe permissions."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

KINDS = ("ed25519", "hmac", "aes")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def write_key_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never over an existing file) and write ``data``.

    Raises:
        click.ClickException: the file exists or cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise click.ClickException(
            f"{path} exists; keys are never overwritten: pick another --id or remove it"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # whatever the umask said


@click.group()
def keys() -> None:
    """Make keys for signed and encrypted task messages (docs/security.md)."""


@keys.command()
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="ed25519",
    show_default=True,
    help="ed25519: a key pair (producers sign, workers verify); hmac: a shared secret; "
    "aes: an encryption key.",
)
@click.option("--id", "key_id", required=True, help="The key id (also the files' name).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write the files to.",
)
def generate(kind: str, key_id: str, out_dir: Path) -> None:
    """Write a new key: private parts readable by their owner only (0600).

    ed25519 writes ID.key (private, 0600) and ID.pub (public, 0644); hmac writes
    ID.secret (0600); aes writes ID.aes (0600). The key itself is never printed.
    """
    if not _ID.match(key_id):
        raise click.BadParameter(
            "letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit",
            param_hint="--id",
        )
    # Here, not at the top: every other command starts without loading cryptography.
    from amqptasks.security.keys import (
        generate_ed25519,
        generate_encryption_key,
        generate_hmac_secret,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    if kind == "ed25519":
        private, public = generate_ed25519()
        private_path, public_path = out_dir / f"{key_id}.key", out_dir / f"{key_id}.pub"
        write_key_file(private_path, private, 0o600)
        write_key_file(public_path, public, 0o644)
        click.echo(f"wrote {private_path} (private, 0600) and {public_path} (public)")
        click.echo("producers:  security_signing_key_id=" + key_id)
        click.echo(f"            security_signing_key=file:{private_path.resolve()}")
        click.echo(f"workers:    security_verify_keys={key_id}=file:{public_path.resolve()}")
        return
    if kind == "hmac":
        path = out_dir / f"{key_id}.secret"
        write_key_file(path, generate_hmac_secret(), 0o600)
        click.echo(f"wrote {path} (shared secret, 0600)")
        click.echo(f"everyone:   security_signing_key_id={key_id}")
        click.echo(f"            security_signing_key=file:{path.resolve()}")
        return
    path = out_dir / f"{key_id}.aes"
    write_key_file(path, generate_encryption_key(), 0o600)
    click.echo(f"wrote {path} (AES-256 key, 0600)")
    click.echo(f"everyone:   security_encryption_keys={key_id}=file:{path.resolve()}")
    click.echo(f"producers:  security_encryption_key_id={key_id}")
