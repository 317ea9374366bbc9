"""A server error is a JSON 500 on a keep-alive connection that stays usable (real uvicorn).

Starlette sends an `Exception` handler's response and then re-raises, and uvicorn closes a
connection whose app raised after the response started: every 500 used to cost the client its
connection (the next request on it got ECONNRESET). The faults here are real ones an API can
meet: a schema that does not match the code, and a Redis key of the wrong type.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import text

from shared.channel import stream_key
from shared.db import get_engine, session_scope
from shared.models import Message, ReplyStatus
from tests.api.live import connection_port, live_api, one_connection_client
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import iter_sse
from tests.helpers import register_and_login


@pytest.fixture(scope="module")
def api_url(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_api(tmp_path_factory.mktemp("api-logs")) as url:
        yield url


@pytest.fixture
def http(api_url: str, db_clean: None, redis_clean: None) -> Iterator[httpx.Client]:
    with one_connection_client(api_url) as client:
        yield client


@contextlib.contextmanager
def _table_renamed(table: str) -> Iterator[None]:
    with get_engine().begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_moved"))
    try:
        yield
    finally:
        with get_engine().begin() as conn:
            conn.execute(text(f"ALTER TABLE {table}_moved RENAME TO {table}"))


def _assert_json_500(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "InternalError", "detail": "Internal server error"}


def _reply(chat_id: str, status: ReplyStatus) -> str:
    with session_scope() as session:
        reply = Message(
            chat_id=uuid.UUID(chat_id),
            role="assistant",
            content="",
            status=status,
            provider_name="echo",
            model_name="echo-1",
        )
        session.add(reply)
        session.flush()
        return str(reply.id)


def _corrupt_buffer(reply_id: str) -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.set(stream_key(reply_id), "not a stream")
    finally:
        client.close()


def test_a_database_error_is_a_json_500_and_the_connection_stays_open(http):
    headers = register_and_login(http)
    before = http.get("/chats", headers=headers)
    assert before.status_code == 200
    with _table_renamed("chats"):
        broken = http.get("/chats", headers=headers)
    _assert_json_500(broken)
    assert connection_port(broken) == connection_port(before), "the 500 closed the connection"
    after = http.get("/chats", headers=headers)
    assert after.status_code == 200
    assert connection_port(after) == connection_port(before)


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_open(http):
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers)
    reply_id = _reply(chat.json()["id"], ReplyStatus.running)
    _corrupt_buffer(reply_id)  # WRONGTYPE: no handler knows this error

    broken = http.get(f"/messages/{reply_id}", headers=headers)
    _assert_json_500(broken)
    assert connection_port(broken) == connection_port(chat), "the 500 closed the connection"
    assert http.get("/chats", headers=headers).status_code == 200


def test_an_error_mid_stream_ends_the_body_cleanly_and_keeps_the_connection(http):
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers)
    reply_id = _reply(chat.json()["id"], ReplyStatus.queued)
    _corrupt_buffer(reply_id)

    with http.stream("GET", f"/messages/{reply_id}/stream", headers=headers) as response:
        assert response.status_code == 200  # headers went out before the read failed
        # A cut chunked body would raise RemoteProtocolError here.
        events = list(iter_sse(response.iter_lines()))
    assert events == []
    after = http.get("/chats", headers=headers)
    assert after.status_code == 200
    assert connection_port(after) == connection_port(chat)
