"""The claim book: the first claim of a task id wins, within the window and the bound."""

from __future__ import annotations

import pytest

from amqptasks.config import Settings
from amqptasks.dedupe.book import ClaimBook
from amqptasks.exceptions import ConfigError


def test_the_first_claim_wins_and_later_ones_do_not_replace_it() -> None:
    book = ClaimBook(60.0)
    book.add("t1", "first", at=100.0, now=100.0)
    book.add("t1", "second", at=101.0, now=101.0)
    assert book.winner("t1", now=102.0) == "first"
    assert book.winner("t2", now=102.0) is None


def test_a_claim_older_than_the_window_is_forgotten() -> None:
    book = ClaimBook(60.0)
    book.add("t1", "first", at=100.0, now=100.0)
    assert book.winner("t1", now=159.0) == "first"
    assert book.winner("t1", now=161.0) is None
    # Past the window a new claim wins again (the bound of the guarantee).
    book.add("t1", "later", at=161.0, now=161.0)
    assert book.winner("t1", now=162.0) == "later"
    # A claim read late but made before the window is not taken.
    book.add("t9", "stale", at=10.0, now=200.0)
    assert book.winner("t9", now=200.0) is None


def test_the_book_keeps_at_most_its_limit_oldest_first() -> None:
    book = ClaimBook(3600.0, limit=3)
    for n in range(5):
        book.add(f"t{n}", f"p{n}", at=100.0 + n, now=100.0 + n)
    assert len(book) == 3
    assert [book.winner(f"t{n}", now=110.0) for n in range(5)] == [None, None, "p2", "p3", "p4"]


@pytest.mark.parametrize("window", [-1, 86401, "soon", True])
def test_a_bad_window_is_refused(window: object) -> None:
    with pytest.raises(ConfigError, match="worker_dedupe_window"):
        Settings.build({"worker_dedupe_window": window}, environ={})


def test_the_window_comes_from_the_environment() -> None:
    settings = Settings.build({}, environ={"AMQPTASKS_WORKER_DEDUPE_WINDOW": "0"})
    assert settings.worker_dedupe_window == 0
