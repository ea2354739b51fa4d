"""Workflows: signatures, chain, group and chord, joined on the broker.

See ``docs/workflows.md``. Everything here builds messages in Celery's wire
form; the worker side that carries workflows on is
:mod:`amqptasks.worker.rules.canvas`.
"""

from __future__ import annotations

from amqptasks.canvas.chain import chain
from amqptasks.canvas.chord import chord
from amqptasks.canvas.group import group
from amqptasks.canvas.signature import Signature, from_dict, maybe_signature, signature

__all__ = ["Signature", "chain", "chord", "from_dict", "group", "maybe_signature", "signature"]
