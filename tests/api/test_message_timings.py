"""A reply's time to first token and duration, from its usage row, on `GET /messages/{id}` and
`GET /chats/{id}/messages`; null for user messages and unfinished replies. The replies are
finished by the worker's own store (workers/outcomes.py) on the real databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import event

from shared.channel import TokenChannel
from shared.db import get_engine
from shared.models import ReplyStatus
from shared.providers.base import Usage
from shared.settings import get_settings
from tests.conftest import TEST_REDIS_URL
from tests.helpers import register_and_login
from workers import outcomes
from workers.generation import _claim
from workers.outcomes import Outcome


@pytest.fixture
def channel() -> Iterator[TokenChannel]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    yield TokenChannel(client, ttl_seconds=600, flush_interval=0.02)
    client.close()


def submit(client: Any, headers: dict[str, str], chat_id: str, text: str) -> str:
    accepted = client.post(f"/chats/{chat_id}/messages", json={"message": text}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["reply_id"]


def finish(channel: TokenChannel, reply_id: str, outcome: Outcome | None) -> None:
    """Take the reply as a worker would; store `outcome` (None: leave it running)."""
    settings = get_settings()
    claim = _claim(uuid.UUID(reply_id), settings)
    assert claim is not None
    if outcome is not None:
        outcomes.finish(claim, outcome, channel, settings)


def test_replies_show_their_time_to_first_token_and_duration(client, channel):
    headers = register_and_login(client)
    chat_id = client.post("/chats", json={}, headers=headers).json()["id"]
    completed = submit(client, headers, chat_id, "one")
    failed = submit(client, headers, chat_id, "two")
    running = submit(client, headers, chat_id, "three")
    queued = submit(client, headers, chat_id, "four")
    finish(
        channel,
        completed,
        Outcome(
            ReplyStatus.completed,
            "hi",
            Usage(5, 2),
            finish_reason="stop",
            ttft_ms=42,
            elapsed_ms=137,
        ),
    )
    # Failed before any token: a duration, no time to first token.
    finish(channel, failed, Outcome(ReplyStatus.failed, "", None, error="boom", elapsed_ms=900))
    finish(channel, running, None)

    one = client.get(f"/messages/{completed}", headers=headers).json()
    assert (one["status"], one["time_to_first_token_ms"], one["response_time_ms"]) == (
        "completed",
        42,
        137,
    )
    listed = client.get(f"/chats/{chat_id}/messages", headers=headers).json()["data"]
    timings = {
        m["id"]: (m["status"], m["time_to_first_token_ms"], m["response_time_ms"]) for m in listed
    }
    assert timings[completed] == ("completed", 42, 137)
    assert timings[failed] == ("failed", None, 900)
    assert timings[running] == ("running", None, None)
    assert timings[queued] == ("queued", None, None)
    users = [m for m in listed if m["role"] == "user"]
    assert len(users) == 4
    assert all(m["time_to_first_token_ms"] is None and m["response_time_ms"] is None for m in users)


def count_queries(call: Any) -> int:
    engine = get_engine()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return len(statements)


def test_the_message_list_reads_timings_without_a_query_per_message(client, channel):
    headers = register_and_login(client)
    chat_id = client.post("/chats", json={}, headers=headers).json()["id"]

    def list_messages() -> None:
        answer = client.get(f"/chats/{chat_id}/messages", headers=headers)
        assert answer.status_code == 200, answer.text

    def add_finished(text: str) -> None:
        outcome = Outcome(ReplyStatus.completed, text, Usage(1, 1), ttft_ms=1, elapsed_ms=2)
        finish(channel, submit(client, headers, chat_id, text), outcome)

    add_finished("first")
    few = count_queries(list_messages)
    for index in range(5):
        add_finished(f"more {index}")
    many = count_queries(list_messages)
    assert few == many, (few, many)
    listed = client.get(f"/chats/{chat_id}/messages", headers=headers).json()["data"]
    replies = [m for m in listed if m["role"] == "assistant"]
    assert len(replies) == 6
    assert all((m["time_to_first_token_ms"], m["response_time_ms"]) == (1, 2) for m in replies)
