"""New task ids: random version 4 UUIDs, as ``uuid.UUID`` would print them."""

from __future__ import annotations

import random
import uuid

from amqptasks.protocol.envelope import new_task_id


def test_the_same_text_as_uuid_for_the_same_random_bits() -> None:
    state = random.getstate()
    try:
        random.seed(2024)
        ours = [new_task_id() for _ in range(2000)]
        random.seed(2024)
        theirs = [str(uuid.UUID(int=random.getrandbits(128), version=4)) for _ in range(2000)]
    finally:
        random.setstate(state)
    assert ours == theirs


def test_ids_are_version_4_and_unique() -> None:
    ids = {new_task_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for each in list(ids)[:100]:
        parsed = uuid.UUID(each)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == each
