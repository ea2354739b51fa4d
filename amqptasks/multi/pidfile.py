"""Pid files of detached workers: read them, and tell a live worker from a stale file."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def read_pid(path: Path) -> int | None:
    """The process id written in ``path``, or None if the file is missing or holds no pid."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _zombie(pid: int) -> bool:
    """True if ``pid`` has exited but was not reaped yet (Linux; False where unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses; state follows the last ')'.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _runs_amqptasks(pid: int) -> bool:
    """False if ``pid`` is known to run another program (its id was reused); True if unknown."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"amqptasks" in cmdline


def alive(pid: int) -> bool:
    """True if ``pid`` is a running amqptasks process (a zombie or a reused pid is not)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        # EPERM: someone else's process, alive (not ours to judge).
        return exc.errno == errno.EPERM
    return not _zombie(pid) and _runs_amqptasks(pid)
