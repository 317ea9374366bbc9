"""Engine and session factory, built lazily per process (never at import time)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_RETRY_DELAY_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, pool_timeout: float = 10.0
) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            # WAL lets the API read while the worker writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping (SQLAlchemy 2.1 turns it on by default): it costs a round trip on every
    # checkout of the hot path. Connections are recycled instead; one that died with a server
    # restart fails a single unit of work.
    return create_engine(
        url,
        # An unreachable host that drops packets would otherwise hang each unit of work for
        # the OS's TCP timeout (minutes) instead of failing fast as "database unavailable".
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=1800,
        pool_pre_ping=False,
    )


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(
        settings.DATABASE_URL,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
    )


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class DatabaseUnavailable(Exception):
    """The database did not answer (down, restarting, failed over, or the pool exhausted)."""


def is_database_unavailable(exc: BaseException) -> bool:
    """Errors that a fresh connection, a moment later, may not see again."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def retry_while_unavailable(
    fn: Callable[[], T], budget_seconds: float, *, what: str, first_delay: float = 0.1
) -> T:
    """`fn()`, retried with backoff while the database is unavailable, for `budget_seconds`.

    A disconnect invalidates the pool's connections, so the retry gets a fresh one: a
    restarted or failed-over server costs one failed attempt, not a lost unit of work.
    Raises DatabaseUnavailable once the budget is spent.
    """
    deadline = time.monotonic() + budget_seconds
    delay = first_delay
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"{what}: {type(exc).__name__}") from exc
            log.warning("%s: database unavailable (%s); retrying", what, type(exc).__name__)
        time.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
