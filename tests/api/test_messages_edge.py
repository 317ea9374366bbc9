"""Submitting, waiting, streaming and cancelling at the edges, against a real uvicorn API.

No worker consumes the queues here, so a submitted reply stays `queued` until the test changes
it: what is checked is the API's side (cancel before any worker, waits and streams that must
end, ids it must refuse). The API's Redis goes through a proxy, so the test can see which of
the API's connections are blocked in a read.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from shared.db import session_scope
from shared.models import Message, ReplyStatus
from shared.models.base import utcnow
from tests.api.live import (
    TcpProxy,
    api_redis_clients,
    blocked_readers,
    live_api,
    proxy_to,
    via,
)
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import SSEResult, read_sse, wait_until
from tests.helpers import register_and_login


@pytest.fixture(scope="module")
def redis_proxy() -> Iterator[TcpProxy]:
    with proxy_to(TEST_REDIS_URL) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest.fixture(scope="module")
def api_url(database: str, redis_proxy: TcpProxy, log_dir: Path) -> Iterator[str]:
    with live_api(log_dir, REDIS_URL=via(TEST_REDIS_URL, redis_proxy)) as url:
        yield url


@pytest.fixture
def http(api_url: str, db_clean: None, redis_clean: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=20) as client:
        yield client


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    yield client
    client.close()


def _chat(http: httpx.Client, headers: dict[str, str]) -> str:
    response = http.post("/chats", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _submit(http: httpx.Client, headers: dict[str, str], chat_id: str, **body: object) -> dict:
    response = http.post(
        f"/chats/{chat_id}/messages", json={"message": "hello"} | body, headers=headers
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def _stream_in_thread(
    pool: ThreadPoolExecutor, base_url: str, path: str, headers: dict[str, str]
) -> object:
    def read() -> SSEResult:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            return read_sse(client, path, headers)

    return pool.submit(read)


def _stored_reply(chat_id: str, status: ReplyStatus, content: str, **columns: object) -> str:
    """A user message and its reply as a worker would have left them."""
    now = utcnow()
    with session_scope() as session:
        question = Message(chat_id=uuid.UUID(chat_id), role="user", content="question")
        session.add(question)
        session.flush()
        reply = Message(
            chat_id=uuid.UUID(chat_id),
            role="assistant",
            content=content,
            status=status,
            provider_name="echo",
            model_name="echo-1",
            reply_to_id=question.id,
            completed_at=now if status.is_final else None,
            **columns,
        )
        session.add(reply)
        session.flush()
        return str(reply.id)


def test_cancelling_a_queued_reply_ends_open_and_late_streams(
    http, api_url, redis_proxy, redis_client
):
    headers = register_and_login(http)
    accepted = _submit(http, headers, _chat(http, headers), message="never mind")
    with ThreadPoolExecutor(1) as pool:
        open_stream = _stream_in_thread(pool, api_url, accepted["stream_url"], headers)
        wait_until(lambda: blocked_readers(redis_proxy, redis_client) == 1, 20)

        cancelled = http.post(f"/messages/{accepted['reply_id']}/cancel", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"

        stream = open_stream.result(30)  # type: ignore[attr-defined]
    assert (stream.last.event, stream.last.data["status"]) == ("done", "cancelled")
    late = read_sse(http, accepted["stream_url"], headers)
    assert (late.last.event, late.last.data["status"]) == ("done", "cancelled")
    polled = http.get(accepted["poll_url"], headers=headers).json()
    assert polled["status"] == "cancelled"
    again = http.post(f"/messages/{accepted['reply_id']}/cancel", headers=headers)
    assert again.status_code == 409


def test_idempotency_key_with_another_body_is_409_and_the_same_body_replays(http):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    key = {"Idempotency-Key": "order-42"}
    first = _submit(http, headers | key, chat_id, message="one", temperature=0.5)

    same = _submit(http, headers | key, chat_id, message="one", temperature=0.5)
    assert (same["message_id"], same["reply_id"]) == (first["message_id"], first["reply_id"])
    for changed in (
        {"message": "two"},
        {"message": "one", "temperature": 0.7},
        {"message": "one", "temperature": 0.5, "stop": ["x"]},
    ):
        other = http.post(f"/chats/{chat_id}/messages", json=changed, headers=headers | key)
        assert other.status_code == 409, other.text
        assert "Idempotency-Key" in other.json()["detail"]
    listed = http.get(f"/chats/{chat_id}/messages", headers=headers).json()
    assert [m["content"] for m in listed["data"] if m["role"] == "user"] == ["one"]


@pytest.mark.parametrize(
    "stop", [["a", "b", "c", "d", "e"], [""], "END", ["x" * 201], ["a\x00"]], ids=str
)
def test_bad_stop_sequences_are_422_and_store_nothing(http, stop):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    answer = http.post(
        f"/chats/{chat_id}/messages", json={"message": "hi", "stop": stop}, headers=headers
    )
    assert answer.status_code == 422, answer.text
    assert http.get(f"/chats/{chat_id}/messages", headers=headers).json()["count"] == 0


def test_stop_sequences_are_kept_on_the_reply(http):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    accepted = _submit(http, headers, chat_id, message="hi", stop=["\n\n", "END"])
    with session_scope() as session:
        reply = session.get(Message, uuid.UUID(accepted["reply_id"]))
        assert reply is not None and reply.stop == ["\n\n", "END"]


def test_wait_true_with_under_a_millisecond_left_still_answers(database, db_clean, log_dir):
    # The first read of the wait gets less than 1 ms: XREAD BLOCK 0 would wait forever.
    with (
        live_api(log_dir, WAIT_TIMEOUT_SECONDS="0.0009") as url,
        httpx.Client(base_url=url, timeout=20) as client,
    ):
        headers = register_and_login(client)
        chat_id = _chat(client, headers)
        waited = client.post(
            f"/chats/{chat_id}/messages?wait=true", json={"message": "hi"}, headers=headers
        )
    assert waited.status_code == 202, waited.text
    assert waited.json()["status"] == "queued"


def test_wait_true_stops_waiting_when_the_client_leaves(http, api_url, redis_proxy, redis_client):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    body = json.dumps({"message": "I will not wait"}).encode()
    request = (
        f"POST /chats/{chat_id}/messages?wait=true HTTP/1.1\r\n"
        f"Host: api\r\nAuthorization: {headers['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    url = httpx.URL(api_url)
    with socket.create_connection((url.host, url.port or 80), timeout=20) as client:
        client.sendall(request + body)
        wait_until(lambda: blocked_readers(redis_proxy, redis_client) == 1, 20)
    # The client is gone. WAIT_TIMEOUT_SECONDS is 300: waiting on would keep issuing reads.

    def stopped_reading() -> bool:
        # Not blocked, and no read for longer than one idle read lasts (5 s): the API stopped
        # waiting, rather than being between two reads.
        entries = api_redis_clients(redis_proxy, redis_client)
        return all("b" not in str(e["flags"]) and int(e["idle"]) >= 7 for e in entries)

    wait_until(stopped_reading, 30, interval=0.5)


def test_a_user_message_has_no_stream(http):
    headers = register_and_login(http)
    accepted = _submit(http, headers, _chat(http, headers))
    with http.stream(
        "GET", f"/messages/{accepted['message_id']}/stream", headers=headers
    ) as response:
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/json")
        assert "user message" in json.loads(response.read())["detail"]


def test_last_event_ids_redis_refuses_are_400_and_a_valid_one_resumes(http):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    reply_id = _stored_reply(chat_id, ReplyStatus.completed, "all of it", finish_reason="stop")
    url = f"/messages/{reply_id}/stream"
    for bad in ("99999999999999999999-0", "1-99999999999999999999", "garbage", "db-9", "-1"):
        response = http.get(url, headers=headers | {"Last-Event-ID": bad})
        assert response.status_code == 400, (bad, response.text)
        assert "Last-Event-ID" in response.json()["detail"]
    # The largest id Redis accepts is after every entry: the reply comes from the database.
    resumed = read_sse(
        http, url, headers | {"Last-Event-ID": "18446744073709551615-18446744073709551615"}
    )
    assert [e.event for e in resumed.events] == ["reset", "token", "done"]
    assert resumed.text == "all of it"


def test_done_event_replayed_from_the_database_has_the_finish_reason(http):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    reply_id = _stored_reply(chat_id, ReplyStatus.completed, "cut short", finish_reason="length")
    stream = read_sse(http, f"/messages/{reply_id}/stream", headers)  # no buffer in Redis
    assert stream.text == "cut short"
    assert stream.last.event == "done"
    assert stream.last.data["finish_reason"] == "length"
    assert http.get(f"/messages/{reply_id}", headers=headers).json()["finish_reason"] == "length"


def test_wait_and_stream_on_a_reply_whose_chat_is_deleted_end_cleanly(
    http, api_url, redis_proxy, redis_client
):
    headers = register_and_login(http)
    chat_id = _chat(http, headers)
    accepted = _submit(http, headers, chat_id)
    with ThreadPoolExecutor(2) as pool:
        stream = _stream_in_thread(pool, api_url, accepted["stream_url"], headers)
        waiting = pool.submit(
            httpx.post,
            f"{api_url}/chats/{chat_id}/messages?wait=true",
            json={"message": "wait for me"},
            headers=headers,
            timeout=30,
        )
        wait_until(lambda: blocked_readers(redis_proxy, redis_client) == 2, 20)
        assert http.delete(f"/chats/{chat_id}", headers=headers).status_code == 204

        waited = waiting.result(30)
        ended = stream.result(30)  # type: ignore[attr-defined]
    assert waited.status_code == 404, waited.text
    assert waited.headers["content-type"].startswith("application/json")
    assert ended.last.event == "error"
    assert "deleted" in ended.last.data["error"]
    assert http.get(accepted["stream_url"], headers=headers).status_code == 404
