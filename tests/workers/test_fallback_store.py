"""Moving a reply to its next target (workers/fallback.py, workers/outcomes.py), in-process on
real PostgreSQL and Redis: a move is stored once whatever repeats, survives a database outage
in the spool, and a job for a step the reply has left runs nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select

from shared.channel import TokenChannel
from shared.db import session_scope
from shared.models import Message, ProviderUsage, ReplyStatus
from shared.providers.base import Usage
from shared.routing.plan import RoutePlan, target_health
from shared.routing.targets import Target
from shared.settings import get_settings
from tests.conftest import TEST_REDIS_URL
from tests.helpers import add_queued_reply, stream_events
from workers import fallback, outcomes
from workers.generation import _claim
from workers.outcomes import NextStep, Outcome, enqueued_marker_key

NEXT = NextStep(step=1, provider="echo", model="echo-2", reason="echo: cut", restart=True)


@pytest.fixture
def reply_id(db_clean: None, redis_clean: None) -> uuid.UUID:
    with session_scope() as session:
        return add_queued_reply(session)


@pytest.fixture
def channel() -> Iterator[TokenChannel]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    yield TokenChannel(client, ttl_seconds=600, flush_interval=0.02)
    client.close()


def _failed_and_moved() -> Outcome:
    return Outcome(
        ReplyStatus.failed,
        "tok0 tok1",
        Usage(10, 2, completion_estimated=True),
        error="echo: cut",
        retry_elsewhere=True,
        next_step=NEXT,
    )


def _state(reply_id: uuid.UUID) -> tuple[Message, list[ProviderUsage]]:
    with session_scope() as session:
        reply = session.get_one(Message, reply_id)
        rows = list(
            session.scalars(select(ProviderUsage).where(ProviderUsage.message_id == reply_id))
        )
        session.expunge_all()
        return reply, rows


def test_a_move_is_stored_once_and_bills_the_failed_attempt(reply_id):
    claim = _claim(reply_id, get_settings())
    assert claim is not None and claim.step == 0
    assert outcomes._store(claim, _failed_and_moved()) is True
    assert outcomes._store(claim, _failed_and_moved()) is True  # a retry after a lost answer

    reply, rows = _state(reply_id)
    assert (reply.status, reply.route_step, reply.provider_name, reply.model_name) == (
        "queued",
        1,
        "echo",
        "echo-2",
    )
    assert reply.attempts == 0 and reply.content == "" and reply.error is None
    (row,) = rows
    assert (row.status, row.route_step, row.completion_tokens, row.error) == (
        "failed",
        0,
        2,
        "echo: cut",
    )


def test_a_spooled_move_is_made_by_the_next_delivery(reply_id, channel):
    claim = _claim(reply_id, get_settings())
    assert claim is not None
    outcomes._spool(channel, claim, _failed_and_moved())  # the database was away
    channel.client.delete(enqueued_marker_key(reply_id))

    assert outcomes.store_spooled(reply_id, channel, get_settings()) is True
    reply, rows = _state(reply_id)
    assert (reply.status, reply.route_step) == ("queued", 1) and len(rows) == 1
    assert "restart" in stream_events(reply_id)
    # The next step's job was sent (its broker marker is set again).
    assert channel.client.exists(enqueued_marker_key(reply_id))


def test_a_job_for_a_step_the_reply_has_left_runs_nothing_and_resends_the_current_one(
    reply_id, channel
):
    settings = get_settings()
    claim = _claim(reply_id, settings)
    assert claim is not None
    assert outcomes._store(claim, _failed_and_moved())
    channel.client.delete(enqueued_marker_key(reply_id))

    assert _claim(reply_id, settings, step=0) is None  # the first target's job, again
    reply, _ = _state(reply_id)
    assert (reply.status, reply.route_step, reply.attempts) == ("queued", 1, 0)
    assert channel.client.exists(enqueued_marker_key(reply_id))  # step 1's job re-sent
    again = _claim(reply_id, settings, step=1)
    assert again is not None and (again.step, again.model, again.attempt) == (1, "echo-2", 1)


def test_the_next_step_passes_over_a_cooling_target(redis_clean):
    settings = get_settings()
    plan = RoutePlan(
        (Target("echo", "echo-1"), Target("echo", "echo-2"), Target("openai", "gpt-4"))
    )
    current = _claim_like(step=0)
    target_health(settings).cool_down(Target("echo", "echo-2"), 30)

    moved = fallback.next_step(current, plan, settings, "echo: boom", tokens_sent=False)
    assert moved is not None and (moved.step, moved.provider, moved.model) == (2, "openai", "gpt-4")
    assert moved.restart is False

    target_health(settings).cool_down(Target("openai", "gpt-4"), 30)
    # Every target left cools down: the first of them is still tried.
    moved = fallback.next_step(current, plan, settings, "echo: boom", tokens_sent=True)
    assert moved is not None and moved.step == 1 and moved.restart is True
    assert fallback.next_step(_claim_like(step=2), plan, settings, "x", tokens_sent=False) is None


def _claim_like(step: int) -> outcomes.StoredFor:
    return outcomes.StoredFor(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, "echo", "echo-1", step)
