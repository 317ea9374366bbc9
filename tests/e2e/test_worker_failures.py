"""A worker that dies mid-job: the job is delivered again and the reply is stored once."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Message, ProviderUsage
from shared.models.base import utcnow
from tests.e2e.harness import read_sse, start_worker, wait_until
from tests.helpers import register_and_login

SLOW_MODEL = "stub-model+tokens=40+delay=100"  # 4 s per reply
EXPECTED = "".join(f"tok{i}" if i == 0 else f" tok{i}" for i in range(40))


def _reply(reply_id: str) -> Message:
    with session_scope() as session:
        return session.get_one(Message, uuid.UUID(reply_id))


def test_killed_worker_job_runs_again_and_is_stored_once(http, service_env, log_dir):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "ollama", "model": SLOW_MODEL}, headers=headers
    ).json()
    first_worker = start_worker(service_env, log_dir, ["ollama"])
    try:
        accepted = http.post(
            f"/chats/{chat['id']}/messages", json={"message": "survive"}, headers=headers
        ).json()
        early = read_sse(http, accepted["stream_url"], headers, stop_after=2)
        assert early.events[0].event == "token"
        assert _reply(accepted["reply_id"]).status == "running"
    finally:
        first_worker.kill()  # SIGKILL: no warm shutdown, the job stays unacknowledged

    second_worker = start_worker(service_env, log_dir, ["ollama"])
    try:
        # Redelivered after about BROKER_VISIBILITY_TIMEOUT (10 s here), then 4 s to generate.
        wait_until(
            lambda: _reply(accepted["reply_id"]).status == "completed",
            40,
            second_worker,
            interval=0.2,
        )
    finally:
        second_worker.stop()

    reply = _reply(accepted["reply_id"])
    assert reply.content == EXPECTED
    assert reply.attempts == 2
    with session_scope() as session:
        usage_rows = session.scalar(
            select(func.count())
            .select_from(ProviderUsage)
            .where(ProviderUsage.message_id == reply.id)
        )
        replies = session.scalar(
            select(func.count()).select_from(Message).where(Message.role == "assistant")
        )
    assert (usage_rows, replies) == (1, 1)
    # A reader from the start sees the restart and ends with exactly the stored text.
    stream = read_sse(http, accepted["stream_url"], headers)
    assert "reset" in [e.event for e in stream.events]
    assert stream.text == EXPECTED and stream.last.event == "done"


def test_a_reply_whose_job_was_lost_is_requeued_and_generated(http):
    """As if Redis had restarted without persistence: the row is queued, the broker is empty."""
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers).json()  # echo
    long_ago = utcnow() - timedelta(minutes=5)
    with session_scope() as session:
        question = Message(
            chat_id=uuid.UUID(chat["id"]), role="user", content="lost job", created_at=long_ago
        )
        session.add(question)
        session.flush()
        reply = Message(
            chat_id=question.chat_id,
            role="assistant",
            status="queued",
            provider_name="echo",
            model_name="echo-1",
            reply_to_id=question.id,
            created_at=long_ago + timedelta(microseconds=1),
        )
        session.add(reply)
        session.flush()
        reply_id = str(reply.id)
    # The sweeper runs every BROKER_VISIBILITY_TIMEOUT / 10 (1 s here).
    wait_until(lambda: _reply(reply_id).status == "completed", 20, interval=0.2)
    assert _reply(reply_id).content == "Echo: lost job"
