"""Users and personal API keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound, Unauthorized
from shared.models import ApiKey, User
from shared.models.base import utcnow
from shared.security import (
    API_KEY_PREFIX,
    DUMMY_PASSWORD_HASH,
    decode_access_token,
    hash_api_key,
    hash_password,
    new_api_key,
    verify_password,
)


class EmailTaken(Conflict):
    pass


class AccountService:
    def register(self, session: Session, *, email: str, password: str) -> User:
        email = email.strip().lower()
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            raise EmailTaken("A user with this email already exists")
        user = User(email=email, password_hash=hash_password(password))
        session.add(user)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent registration won the race
            raise EmailTaken("A user with this email already exists") from exc
        return user

    def authenticate(self, session: Session, *, email: str, password: str) -> User:
        if "\x00" in email:  # cannot be stored, so cannot match; PostgreSQL would reject it
            raise Unauthorized("Incorrect email or password")
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            verify_password(password, DUMMY_PASSWORD_HASH)
            raise Unauthorized("Incorrect email or password")
        if not verify_password(password, user.password_hash) or not user.is_active:
            raise Unauthorized("Incorrect email or password")
        return user

    def get_active(self, session: Session, user_id: uuid.UUID) -> User | None:
        user = session.get(User, user_id)
        return user if user is not None and user.is_active else None

    def create_api_key(self, session: Session, user: User, *, name: str) -> tuple[ApiKey, str]:
        """Returns the row and the key itself, which is never retrievable again."""
        key = new_api_key()
        row = ApiKey(user_id=user.id, name=name, prefix=key[:10], key_hash=hash_api_key(key))
        session.add(row)
        session.flush()
        return row, key

    def list_api_keys(self, session: Session, user: User) -> list[ApiKey]:
        rows = session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at.desc())
        )
        return list(rows)

    def revoke_api_key(self, session: Session, user: User, key_id: uuid.UUID) -> None:
        row = session.get(ApiKey, key_id)
        if row is None or row.user_id != user.id or row.revoked_at is not None:
            raise NotFound("API key not found")
        row.revoked_at = utcnow()
        session.flush()

    def user_for_credential(
        self, session: Session, credential: str, secret_key: str
    ) -> User | None:
        """The active user behind a bearer credential: an access token or an `sb_` API key."""
        if credential.startswith(API_KEY_PREFIX):
            return self.user_for_api_key(session, credential)
        user_id = decode_access_token(credential, secret_key)
        return self.get_active(session, user_id) if user_id else None

    def user_for_api_key(self, session: Session, key: str) -> User | None:
        # The key and its active user in one query: every API call pays for this one.
        found = session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(
                ApiKey.key_hash == hash_api_key(key),
                ApiKey.revoked_at.is_(None),
                User.is_active,
            )
        ).one_or_none()
        if found is None:
            return None
        row, user = found
        now = utcnow()
        # To the minute: a write on every call would cost each call a commit it may not need.
        if row.last_used_at is None or now - _aware(row.last_used_at) >= LAST_USED_RESOLUTION:
            row.last_used_at = now
        return user


LAST_USED_RESOLUTION = timedelta(minutes=1)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


account_service = AccountService()
