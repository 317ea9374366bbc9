"""Redis going away under a running API (uvicorn, through a proxy the test cuts).

Redis is the broker and the token channel; the database is the record. Without Redis, reads
answer from the stored rows, streams follow the stored reply to its end, and a submission the
broker refused is sent once Redis is back, by retrying it with the same Idempotency-Key.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import update

from shared.db import session_scope
from shared.models import Message, ReplyStatus
from shared.models.base import utcnow
from tests.api.live import TcpProxy, live_api, proxy_to, via
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import read_sse
from tests.helpers import register_and_login


@pytest.fixture(scope="module")
def redis_proxy() -> Iterator[TcpProxy]:
    with proxy_to(TEST_REDIS_URL) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def api_url(
    database: str, redis_proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log_dir: Path = tmp_path_factory.mktemp("api-logs")
    with live_api(log_dir, REDIS_URL=via(TEST_REDIS_URL, redis_proxy)) as url:
        yield url


@pytest.fixture
def http(
    api_url: str, redis_proxy: TcpProxy, db_clean: None, redis_clean: None
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client
    redis_proxy.restore()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    yield client
    client.close()


def _chat(http: httpx.Client, headers: dict[str, str]) -> str:
    response = http.post("/chats", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _running_reply(chat_id: str, content: str) -> str:
    with session_scope() as session:
        reply = Message(
            chat_id=uuid.UUID(chat_id),
            role="assistant",
            content=content,
            status=ReplyStatus.running,
            provider_name="echo",
            model_name="echo-1",
            started_at=utcnow(),
        )
        session.add(reply)
        session.flush()
        return str(reply.id)


def _queued_jobs_for(redis_client: redis.Redis, reply_id: str) -> int:
    # Celery's message headers name the task's arguments (`argsrepr`), i.e. the reply id.
    return sum(reply_id in job for job in redis_client.lrange("echo", 0, -1))


def _drop_jobs_for(redis_client: redis.Redis, reply_id: str) -> None:
    # No worker runs here: leave no job behind for a later test's worker.
    for job in redis_client.lrange("echo", 0, -1):
        if reply_id in job:
            redis_client.lrem("echo", 0, job)


def test_reading_a_running_reply_while_redis_is_down_answers_the_stored_text(http, redis_proxy):
    headers = register_and_login(http)
    reply_id = _running_reply(_chat(http, headers), "stored so far")
    redis_proxy.cut()

    polled = http.get(f"/messages/{reply_id}", headers=headers)
    assert polled.status_code == 200, polled.text
    assert (polled.json()["status"], polled.json()["content"]) == ("running", "stored so far")


def test_a_stream_outlives_a_redis_outage_and_ends_with_the_stored_reply(http, redis_proxy):
    headers = register_and_login(http)
    reply_id = _running_reply(_chat(http, headers), "")
    redis_proxy.cut()

    def worker_finishes() -> None:
        with session_scope() as session:
            session.execute(
                update(Message)
                .where(Message.id == uuid.UUID(reply_id))
                .values(
                    status=ReplyStatus.completed,
                    content="the whole reply",
                    finish_reason="stop",
                    completed_at=utcnow(),
                )
            )

    # Whether the stream is already open when the row changes or not, it ends the same way.
    finisher = threading.Timer(1.0, worker_finishes)
    finisher.start()
    try:
        stream = read_sse(http, f"/messages/{reply_id}/stream", headers)
    finally:
        finisher.join()
    assert stream.text == "the whole reply"
    assert (stream.last.event, stream.last.data["status"]) == ("done", "completed")


def test_a_stream_on_a_deleted_chats_reply_ends_with_error_while_redis_is_down(http, redis_proxy):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    reply_id = _running_reply(chat_id, "")
    redis_proxy.cut()

    def chat_deleted() -> None:
        # Deleted where no Redis event can announce it (Redis is down for everyone).
        with session_scope() as session:
            session.execute(Message.__table__.delete().where(Message.chat_id == uuid.UUID(chat_id)))

    deleter = threading.Timer(1.0, chat_deleted)
    deleter.start()
    try:
        stream = read_sse(http, f"/messages/{reply_id}/stream", headers)
    finally:
        deleter.join()
    assert stream.last.event == "error"
    assert "deleted" in stream.last.data["error"]


def test_cancelling_a_queued_reply_while_redis_is_down_still_cancels(
    http, redis_proxy, redis_client
):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    accepted = http.post(f"/chats/{chat_id}/messages", json={"message": "x"}, headers=headers)
    assert accepted.status_code == 202
    reply_id = accepted.json()["reply_id"]
    redis_proxy.cut()
    try:
        cancelled = http.post(f"/messages/{reply_id}/cancel", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        stream = read_sse(http, f"/messages/{reply_id}/stream", headers)
        assert (stream.last.event, stream.last.data["status"]) == ("done", "cancelled")
    finally:
        redis_proxy.restore()
        _drop_jobs_for(redis_client, reply_id)


def test_retrying_with_the_idempotency_key_after_a_broker_outage_sends_the_message(
    http, redis_proxy, redis_client
):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    submit = {"json": {"message": "deliver me"}, "headers": headers | {"Idempotency-Key": "k-1"}}
    redis_proxy.cut()
    refused = http.post(f"/chats/{chat_id}/messages", **submit)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    redis_proxy.restore()

    retried = http.post(f"/chats/{chat_id}/messages", **submit)
    assert retried.status_code == 202, retried.text
    reply_id = retried.json()["reply_id"]
    try:
        assert retried.json()["status"] == "queued"
        polled = http.get(f"/messages/{reply_id}", headers=headers).json()
        assert (polled["status"], polled["error"]) == ("queued", None)
        assert _queued_jobs_for(redis_client, reply_id) == 1
        # Once sent, a further retry replays the submission and sends nothing more.
        again = http.post(f"/chats/{chat_id}/messages", **submit)
        assert (again.status_code, again.json()["reply_id"]) == (202, reply_id)
        assert _queued_jobs_for(redis_client, reply_id) == 1
        listed = http.get(f"/chats/{chat_id}/messages", headers=headers).json()
        assert [m["role"] for m in listed["data"]] == ["user", "assistant"]
    finally:
        _drop_jobs_for(redis_client, reply_id)
