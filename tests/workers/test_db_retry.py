"""A unit of work that finds the database unavailable (here: its pool exhausted) is retried
on a fresh connection for a bounded time, then reported as DatabaseUnavailable."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db import DatabaseUnavailable, make_engine, retry_while_unavailable


@pytest.fixture
def tiny_engine(database: str):
    engine = make_engine(database, pool_size=1, max_overflow=0, pool_timeout=0.05)
    yield engine
    engine.dispose()


def _select_one(engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT 1")))


def test_an_exhausted_pool_is_waited_out(tiny_engine):
    held = tiny_engine.connect()
    threading.Timer(0.3, held.close).start()  # the other unit of work finishes
    assert retry_while_unavailable(lambda: _select_one(tiny_engine), 10, what="test") == 1


def test_an_exhausted_pool_past_the_budget_is_database_unavailable(tiny_engine):
    with tiny_engine.connect(), pytest.raises(DatabaseUnavailable, match="TimeoutError"):
        retry_while_unavailable(lambda: _select_one(tiny_engine), 0.3, what="test")


def test_other_database_errors_are_not_retried(tiny_engine):
    calls = []

    def violates() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        retry_while_unavailable(violates, 10, what="test")
    assert calls == [1]
