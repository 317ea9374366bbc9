"""Small helpers shared by API and pipeline tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.engine import make_url


def register_and_login(
    client: Any, email: str | None = None, password: str = "correct horse battery"
) -> dict[str, str]:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    token = client.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def recreate_migrated_database(url: str) -> None:
    """Drop and create the PostgreSQL database named in `url`, then `alembic upgrade head`."""
    import alembic.command as command
    import psycopg2

    from shared.cli import alembic_config

    target = make_url(url)
    admin = psycopg2.connect(
        host=target.host,
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        dbname="postgres",
    )
    admin.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{target.database}"')
    admin.close()
    command.upgrade(alembic_config(url), "head")


def add_user_and_chat(session: Any, provider: str = "echo", model: str = "echo-1") -> Any:
    """A new user and one chat of theirs (flushed); returns the chat."""
    from shared.models import Chat, User

    user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
    session.add(user)
    session.flush()
    chat = Chat(user_id=user.id, provider_name=provider, model_name=model)
    session.add(chat)
    session.flush()
    return chat


def add_queued_reply(
    session: Any,
    chat: Any = None,
    question: str = "say this back",
    *,
    created_at: Any = None,
    enqueued_at: Any = None,
) -> uuid.UUID:
    """A user message and its queued reply, as a submission stores them (without the job)."""
    from datetime import timedelta

    from shared.models import Message

    chat = chat or add_user_and_chat(session)
    times = {} if created_at is None else {"created_at": created_at}
    asked = Message(chat_id=chat.id, role="user", content=question, **times)
    session.add(asked)
    session.flush()
    if created_at is not None:
        times = {"created_at": created_at + timedelta(microseconds=1)}
    reply = Message(
        chat_id=chat.id,
        role="assistant",
        status="queued",
        provider_name=chat.provider_name,
        model_name=chat.model_name,
        reply_to_id=asked.id,
        enqueued_at=enqueued_at,
        **times,
    )
    session.add(reply)
    session.flush()
    return reply.id


def stream_events(reply_id: object) -> list[str]:
    """The event names in a reply's Redis stream, oldest first."""
    import redis

    from shared.channel import stream_key
    from tests.conftest import TEST_REDIS_URL

    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        return [fields["event"] for _id, fields in client.xrange(stream_key(reply_id))]
    finally:
        client.close()


def empty_tables() -> None:
    """Every table emptied, as `db_clean` leaves them (API and worker processes commit for
    real, so a module with its own processes cleans up after itself the same way)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from shared.db import get_engine
    from shared.models import Base

    # provider_catalog first: TRUNCATE locks tables in the order given, and the API and worker
    # processes read the catalog row before the other provider and routing tables (one
    # transaction, shared/providers/directory.py). Taking it first, a reload either finishes
    # before the truncate or waits for it; in another order each holds what the other wants.
    names = sorted(
        (t.name for t in Base.metadata.sorted_tables), key=lambda n: n != "provider_catalog"
    )
    tables = ", ".join(names)
    # A worker may still be storing a reply a test did not wait for (its UPDATE and the
    # foreign-key checks of its usage row lock tables in another order): PostgreSQL then
    # breaks the deadlock by aborting one side, and the remedy it documents is to run the
    # aborted transaction again.
    for attempt in range(DEADLOCK_ATTEMPTS):
        try:
            with get_engine().begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            deadlocked = "deadlock detected" in str(exc.orig)
            if not deadlocked or attempt == DEADLOCK_ATTEMPTS - 1:
                raise


DEADLOCK_ATTEMPTS = 3
