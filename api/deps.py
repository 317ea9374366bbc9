"""Request dependencies: settings, the DB session (the request owns the transaction), the user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from shared.accounts.service import account_service
from shared.db import get_sessionmaker
from shared.errors import Unauthorized
from shared.models import User
from shared.security import API_KEY_PREFIX, decode_access_token
from shared.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session() -> Iterator[Session]:
    """Commits when the handler returns, rolls back when it raises (before the response is sent)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    """Accepts an access token or a personal API key (`sb_...`) as the bearer credential."""
    if not token:
        raise Unauthorized()
    user: User | None
    if token.startswith(API_KEY_PREFIX):
        user = account_service.user_for_api_key(session, token)
    else:
        user_id = decode_access_token(token, settings.secret_key)
        user = account_service.get_active(session, user_id) if user_id else None
    if user is None:
        raise Unauthorized("Invalid or expired credentials")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


class Page:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[Page, Depends()]
