"""Storing how a generation ended (workers/outcomes.py), in-process on real PostgreSQL and Redis:
stored once whatever repeats, never over a later delivery, kept for billing when the chat is
gone, and timed on the database's clock (issue 12, 2.1, 2.5 and 2.13)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
import redis
from sqlalchemy import select
from sqlalchemy.engine import make_url

from shared.channel import TokenChannel
from shared.db import get_engine, session_scope
from shared.models import Chat, Message, ProviderUsage, ReplyStatus
from shared.models.base import utcnow
from shared.providers.base import Usage
from shared.settings import get_settings
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.helpers import add_queued_reply, stream_events
from workers import outcomes
from workers.generation import _claim, run_generation
from workers.outcomes import Outcome

QUESTION = "say this back"


@pytest.fixture
def reply_id(db_clean: None, redis_clean: None) -> uuid.UUID:
    with session_scope() as session:
        return add_queued_reply(session, question=QUESTION)


@pytest.fixture
def channel() -> Iterator[TokenChannel]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    yield TokenChannel(client, ttl_seconds=600, flush_interval=0.02)
    client.close()


def _reply(reply_id: uuid.UUID) -> Message:
    with session_scope() as session:
        return session.get_one(Message, reply_id)


def _usage_rows(**where: object) -> list[ProviderUsage]:
    with session_scope() as session:
        query = select(ProviderUsage)
        for column, value in where.items():
            query = query.where(getattr(ProviderUsage, column) == value)
        return list(session.scalars(query))


def _completed(text: str) -> Outcome:
    return Outcome(ReplyStatus.completed, text, Usage(10, 3), finish_reason="stop")


def test_a_store_repeated_after_its_commit_answer_was_lost_bills_once(reply_id):
    # A finish retried because the connection died after COMMIT reached the server: the
    # retry must recognise its own result instead of failing or adding a usage row.
    claim = _claim(reply_id, get_settings())
    assert claim is not None
    target = claim
    assert outcomes._store(target, _completed("the answer")) is True
    assert outcomes._store(target, _completed("the answer")) is True
    reply = _reply(reply_id)
    assert (reply.status, reply.content) == ("completed", "the answer")
    assert len(_usage_rows(message_id=reply_id)) == 1


def test_a_delivery_taken_over_by_a_later_one_stores_nothing(reply_id, channel):
    settings = get_settings()
    first = _claim(reply_id, settings)
    with session_scope() as session:
        # The first delivery's worker looked dead: its lease expired, a second took over.
        session.get_one(Message, reply_id).lease_expires_at = utcnow() - dt.timedelta(hours=1)
    second = _claim(reply_id, settings)
    assert first is not None and second is not None and second.attempt == first.attempt + 1

    outcomes.finish(first, _completed("from the first delivery"), channel, settings)
    assert _reply(reply_id).status == "running"
    assert _usage_rows(message_id=reply_id) == []
    assert "done" not in stream_events(reply_id)

    outcomes.finish(second, _completed("from the second delivery"), channel, settings)
    assert _reply(reply_id).content == "from the second delivery"
    assert len(_usage_rows(message_id=reply_id)) == 1
    assert stream_events(reply_id).count("done") == 1


def test_a_reply_whose_chat_was_deleted_meanwhile_keeps_its_usage(reply_id, channel):
    settings = get_settings()
    claim = _claim(reply_id, settings)
    assert claim is not None
    with session_scope() as session:
        session.delete(session.get_one(Chat, claim.chat_id))
    cancelled = Outcome(
        ReplyStatus.cancelled, "Echo:", Usage(12, 1, completion_estimated=True), error=None
    )
    outcomes.finish(claim, cancelled, channel, settings)
    rows = _usage_rows(user_id=claim.user_id)
    assert [(r.message_id, r.chat_id, r.status, r.completion_tokens) for r in rows] == [
        (None, None, "cancelled", 1)
    ]
    # Deleting the chat already ended the readers' streams (shared/channel.py).
    assert "done" not in stream_events(reply_id)


def test_a_spooled_outcome_is_stored_by_the_next_delivery_without_generating(reply_id, channel):
    settings = get_settings()
    claim = _claim(reply_id, settings)
    assert claim is not None
    partial = Outcome(
        ReplyStatus.cancelled,
        "Echo: say",
        Usage(28, 2, completion_estimated=True),
        ttft_ms=5,
        elapsed_ms=40,
    )
    # What finish() leaves behind when the database stayed away for FINISH_RETRY_SECONDS.
    outcomes._spool(channel, claim, partial)

    run_generation(reply_id, channel=channel)
    reply = _reply(reply_id)
    # The spooled text, not a new echo of the whole question; no second claim.
    assert (reply.status, reply.content, reply.attempts) == ("cancelled", "Echo: say", 1)
    [usage] = _usage_rows(message_id=reply_id)
    assert (usage.prompt_tokens, usage.completion_tokens) == (28, 2)
    assert (usage.prompt_tokens_estimated, usage.completion_tokens_estimated) == (False, True)
    assert (usage.time_to_first_token_ms, usage.response_time_ms) == (5, 40)
    assert channel.client.get(outcomes.spool_key(reply_id)) is None
    assert stream_events(reply_id) == ["done"]


# The database's clock, one hour ahead of this host's: leases must follow the database.
SKEW = dt.timedelta(hours=1)


def _admin(sql: str) -> None:
    url = make_url(TEST_DATABASE_URL)
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@pytest.fixture
def database_clock_ahead(reply_id: uuid.UUID) -> Iterator[None]:
    """Sessions of the test database see `now()` an hour ahead (a public.now() found before
    pg_catalog's), as when the database host's clock and the worker's disagree. Column
    defaults are unaffected: they were bound to pg_catalog.now() when the tables were made."""
    database = make_url(TEST_DATABASE_URL).database
    _admin(
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql STABLE"
        " AS $$ SELECT pg_catalog.now() + interval '1 hour' $$"
    )
    _admin(f'ALTER DATABASE "{database}" SET search_path = public, pg_catalog')
    get_engine().dispose()  # new connections read the database's search_path
    try:
        yield
    finally:
        _admin(f'ALTER DATABASE "{database}" RESET search_path')
        _admin("DROP FUNCTION public.now()")
        get_engine().dispose()


def test_claim_and_finish_use_the_database_clock(reply_id, database_clock_ahead):
    host_now = utcnow()
    run_generation(reply_id)
    reply = _reply(reply_id)
    assert reply.status == "completed"
    assert reply.started_at is not None and reply.completed_at is not None
    assert reply.started_at - host_now > SKEW / 2
    assert reply.completed_at - host_now > SKEW / 2


def test_a_lease_expired_by_the_database_clock_is_taken_over(reply_id, database_clock_ahead):
    with session_scope() as session:
        reply = session.get_one(Message, reply_id)
        # Live for ten more minutes by this host's clock, expired 50 minutes ago by the
        # database's: every worker must agree it expired, whatever its own clock says.
        reply.status, reply.attempts = "running", 1
        reply.lease_expires_at = utcnow() + dt.timedelta(minutes=10)
    claim = _claim(reply_id, get_settings())
    assert claim is not None and claim.attempt == 2
    reply = _reply(reply_id)
    assert reply.lease_expires_at is not None and reply.started_at is not None
    assert reply.lease_expires_at - reply.started_at == dt.timedelta(
        seconds=get_settings().TASK_TIME_LIMIT
    )
    assert reply.started_at - utcnow() > SKEW / 2
