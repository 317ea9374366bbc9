"""The generation runner in-process, against real PostgreSQL and Redis, with the echo provider."""

from __future__ import annotations

import uuid

import pytest
import redis
from sqlalchemy import func, select

from shared.channel import TokenChannel
from shared.db import session_scope
from shared.models import Chat, Message, ProviderUsage, SystemPrompt
from shared.settings import get_settings
from tests.helpers import add_queued_reply, stream_events
from workers.generation import run_generation


@pytest.fixture
def reply_id(db_clean: None, redis_clean: None) -> uuid.UUID:
    with session_scope() as session:
        return add_queued_reply(session)


def _reply(reply_id: uuid.UUID) -> Message:
    with session_scope() as session:
        return session.get_one(Message, reply_id)


def _usage_rows(reply_id: uuid.UUID) -> int:
    with session_scope() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(ProviderUsage)
                .where(ProviderUsage.message_id == reply_id)
            )
            or 0
        )


def test_a_job_delivered_twice_generates_once(reply_id):
    run_generation(reply_id)
    run_generation(reply_id)  # a duplicate delivery finds the reply finished and does nothing
    reply = _reply(reply_id)
    assert (reply.status, reply.content, reply.attempts) == ("completed", "Echo: say this back", 1)
    assert _usage_rows(reply_id) == 1
    assert stream_events(reply_id).count("done") == 1


def test_delivery_cap_fails_a_job_that_keeps_killing_its_worker(reply_id):
    limit = get_settings().TASK_MAX_DELIVERIES
    with session_scope() as session:
        reply = session.get_one(Message, reply_id)
        # As if `limit` workers had died mid-job: running, lease expired.
        reply.status, reply.attempts, reply.lease_expires_at = "running", limit, reply.created_at
    run_generation(reply_id)
    reply = _reply(reply_id)
    assert reply.status == "failed"
    assert f"after {limit} deliveries" in reply.error
    assert stream_events(reply_id) == ["error"]


def test_a_live_lease_is_not_taken_over(reply_id):
    run_generation(reply_id)
    with session_scope() as session:
        reply = session.get_one(Message, reply_id)
        reply.status, reply.content = "running", "still going"  # lease_expires_at is None
        reply.lease_expires_at = None
    run_generation(reply_id)
    assert _reply(reply_id).content == "still going"


def test_redis_down_mid_generation_still_stores_the_reply(reply_id):
    dead = TokenChannel(
        redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5),
        ttl_seconds=60,
        flush_interval=0.01,
    )
    run_generation(reply_id, channel=dead)
    reply = _reply(reply_id)
    assert (reply.status, reply.content) == ("completed", "Echo: say this back")
    assert _usage_rows(reply_id) == 1


def test_unknown_provider_in_a_stored_reply_fails_readably(reply_id):
    with session_scope() as session:
        session.get_one(Message, reply_id).provider_name = "gone"
    run_generation(reply_id)
    reply = _reply(reply_id)
    assert reply.status == "failed" and "gone" in reply.error


def test_claim_loads_history_and_the_system_prompt(reply_id):
    from workers.generation import _claim

    with session_scope() as session:
        reply = session.get_one(Message, reply_id)
        chat = session.get_one(Chat, reply.chat_id)
        session.add(
            SystemPrompt(user_id=chat.user_id, name="d", content="be brief", is_default=True)
        )
    claim = _claim(reply_id, get_settings())
    assert [(m.role, m.content) for m in claim.messages] == [
        ("system", "be brief"),
        ("user", "say this back"),
    ]
    with session_scope() as session:
        chat = session.get_one(Chat, _reply(reply_id).chat_id)
        own = SystemPrompt(user_id=chat.user_id, name="own", content="be verbose")
        session.add(own)
        session.flush()
        chat.system_prompt_id = own.id
        session.get_one(Message, reply_id).status = "queued"
    claim = _claim(reply_id, get_settings())
    assert claim.messages[0].content == "be verbose"
