"""Request dependencies. Each request does all its database work in ONE unit of work.

A route calls `await auth.run(service_fn, *args)`: one thread-pool call that opens a session,
resolves the bearer credential to a user, runs the service function, commits (rolls back on
error) and releases the connection. A connection is never held while a request waits for a
thread, so more concurrent requests than pooled connections queue instead of deadlocking.

A pooled connection that died while idle (a database restart or failover) fails the first
statement that uses it; the pool then discards its other connections of that age. Such a unit of
work is run once more on a fresh connection, unless it had begun to commit: a commit cut off by
the disconnect may have been applied, and running the work again could apply it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.accounts.service import account_service
from shared.db import get_sessionmaker, session_scope
from shared.errors import Unauthorized
from shared.models import User
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMIT_ATTEMPTED = "commit_attempted"

SettingsDep = Annotated[Settings, Depends(get_settings)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def _note_commit_attempt(session: Session) -> None:
    session.info[COMMIT_ATTEMPTED] = True


def _track_commits(maker: sessionmaker[Session]) -> None:
    # Once per sessionmaker: the listener applies to every session it makes, at no cost per
    # session (a listener per session instance would be registered on every request).
    if not event.contains(maker, "before_commit", _note_commit_attempt):
        event.listen(maker, "before_commit", _note_commit_attempt)


def _attempt(fn: Callable[..., T], args: Any, kwargs: Any, used: list[Session]) -> T:
    with session_scope() as session:
        used.append(session)
        return fn(session, *args, **kwargs)


def _run_unit_of_work(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    _track_commits(get_sessionmaker())
    used: list[Session] = []
    try:
        return _attempt(fn, args, kwargs, used)
    except DBAPIError as exc:
        committing = any(session.info.get(COMMIT_ATTEMPTED) for session in used)
        if not exc.connection_invalidated or committing:
            raise
        log.warning("stale database connection (%s); retrying on a fresh one", type(exc).__name__)
    return _attempt(fn, args, kwargs, [])


async def run_in_session(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(session, *args, **kwargs)` in one transaction, off the event loop."""
    return await run_in_threadpool(_run_unit_of_work, fn, *args, **kwargs)


class Auth:
    """The caller's credential (access token or `sb_` API key), checked inside the unit of work."""

    def __init__(
        self,
        settings: SettingsDep,
        token: Annotated[str | None, Depends(oauth2_scheme)],
    ) -> None:
        if not token:
            raise Unauthorized()
        self.settings = settings
        self.token = token

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(session, user, *args, **kwargs)` for the authenticated user, in one transaction."""
        return await run_in_session(self._with_user, fn, *args, **kwargs)

    def _with_user(self, session: Session, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        user = account_service.user_for_credential(session, self.token, self.settings.secret_key)
        if user is None:
            raise Unauthorized("Invalid or expired credentials")
        return fn(session, user, *args, **kwargs)


AuthDep = Annotated[Auth, Depends()]


class Page:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[Page, Depends()]


def current_user(_session: Session, user: User) -> User:
    return user
