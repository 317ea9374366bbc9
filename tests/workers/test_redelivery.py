"""The redelivery sweeper against real PostgreSQL and Redis: lost jobs come back exactly once,
a long backlog is left alone, and replies no worker can serve end instead of waiting forever."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from shared.channel import stream_key
from shared.db import session_scope
from shared.models import Message
from shared.models.base import utcnow
from tests.conftest import TEST_REDIS_URL
from tests.helpers import add_queued_reply, add_user_and_chat
from workers.celery_app import enqueue_generation
from workers.generation import token_channel
from workers.redelivery import consumer_key, fail_orphans, requeue_lost

VISIBILITY = 6
# A queue no test worker consumes, so the broker keeps what the sweeper sends.
QUEUE = "sweeper-test"


@pytest.fixture
def broker(db_clean: None, redis_clean: None) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    client.delete(QUEUE, "gone")
    yield client
    client.delete(QUEUE, "gone")
    client.close()


def _queued_replies(count: int, provider: str = QUEUE, age_seconds: int = 60) -> list[uuid.UUID]:
    long_ago = utcnow() - timedelta(seconds=age_seconds)
    ids = []
    with session_scope() as session:
        chat = add_user_and_chat(session, provider=provider)
        for i in range(count):
            at = long_ago + timedelta(seconds=i)
            ids.append(add_queued_reply(session, chat, f"q{i}", created_at=at, enqueued_at=at))
    return ids


def test_a_backlog_older_than_the_visibility_timeout_is_not_enqueued_again(broker):
    for reply_id in _queued_replies(15):
        enqueue_generation(reply_id, QUEUE)  # still in the broker: waiting for a busy worker
    assert broker.llen(QUEUE) == 15
    for _ in range(5):  # five sweeps, as several workers would run
        assert requeue_lost(broker, QUEUE, VISIBILITY, enqueue_generation) == 0
    assert broker.llen(QUEUE) == 15


def test_jobs_lost_with_the_broker_come_back_once_oldest_first(broker):
    ids = _queued_replies(15)  # the rows exist, the broker lost the jobs (and their markers)
    sent: list[uuid.UUID] = []

    def enqueue(reply_id: uuid.UUID, provider: str) -> None:
        sent.append(reply_id)
        enqueue_generation(reply_id, provider)

    assert requeue_lost(broker, QUEUE, VISIBILITY, enqueue) == 15
    assert sent == ids
    for _ in range(5):
        assert requeue_lost(broker, QUEUE, VISIBILITY, enqueue) == 0
    assert broker.llen(QUEUE) == 15


def test_a_recently_enqueued_reply_is_not_swept(broker):
    (reply_id,) = _queued_replies(1)
    with session_scope() as session:
        session.execute(update(Message).values(enqueued_at=utcnow()))
    assert requeue_lost(broker, QUEUE, VISIBILITY, enqueue_generation) == 0
    assert broker.llen(QUEUE) == 0


def test_replies_of_a_provider_no_worker_serves_end_failed_with_an_error_event(broker):
    (orphan,) = _queued_replies(1, provider="gone", age_seconds=120)
    (served,) = _queued_replies(1, provider=QUEUE, age_seconds=120)
    broker.set(consumer_key(QUEUE), "1", ex=30)  # a live worker consumes this queue

    assert fail_orphans(broker, token_channel(), timeout_seconds=60) == [orphan]

    with session_scope() as session:
        gone = session.get_one(Message, orphan)
        assert gone.status == "failed" and "No worker serves provider 'gone'" in gone.error
        assert session.get_one(Message, served).status == "queued"
    events = [f["event"] for _id, f in broker.xrange(stream_key(orphan))]
    assert events == ["error"]


def test_orphans_are_failed_only_after_the_configured_time(broker):
    _queued_replies(1, provider="gone", age_seconds=30)
    assert fail_orphans(broker, token_channel(), timeout_seconds=60) == []
