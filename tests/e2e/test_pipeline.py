"""The whole path: API -> PostgreSQL -> Celery queue -> worker -> provider stub -> Redis -> SSE."""

from __future__ import annotations

import time
import uuid

import httpx
import redis
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Message, ProviderUsage
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import read_sse, start_api, wait_until
from tests.helpers import register_and_login

STUB_REPLY_25 = "".join(f"tok{i}" if i == 0 else f" tok{i}" for i in range(8))


def _submit(http: httpx.Client, headers: dict[str, str], chat_id: str, **body: object) -> dict:
    response = http.post(f"/chats/{chat_id}/messages", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def _poll(http: httpx.Client, headers: dict[str, str], reply_id: str, timeout: float = 30) -> dict:
    result: dict = {}

    def finished() -> bool:
        result.update(http.get(f"/messages/{reply_id}", headers=headers).json())
        return result["status"] in ("completed", "failed", "cancelled")

    wait_until(finished, timeout, interval=0.05)
    return result


def _usage_row(reply_id: str) -> ProviderUsage | None:
    with session_scope() as session:
        return session.scalar(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
        )


def _queue_length(name: str) -> int:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        return int(client.llen(name))
    finally:
        client.close()


def test_submit_stream_done_and_stored_usage(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "stub-model"}, headers=headers
    ).json()
    accepted = _submit(http, headers, chat["id"], message="hello there")
    assert accepted["status"] == "queued"
    assert accepted["stream_url"] == f"/messages/{accepted['reply_id']}/stream"

    stream = read_sse(http, accepted["stream_url"], headers)
    assert [e.event for e in stream.events][-1] == "done"
    assert all(e.id for e in stream.events)
    assert stream.text == STUB_REPLY_25
    done = stream.last.data
    assert done["status"] == "completed"
    # The stub reports prompt tokens = words in all messages, completion = tokens streamed.
    assert done["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 8,
        "total_tokens": 10,
        "estimated": False,
        "estimated_fields": [],
    }

    reply = http.get(accepted["poll_url"], headers=headers).json()
    assert reply["status"] == "completed"
    assert reply["content"] == STUB_REPLY_25
    assert (reply["provider"], reply["model"]) == ("openai", "stub-model")
    assert reply["usage"]["total_tokens"] == 10
    usage = _usage_row(accepted["reply_id"])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.tokens_used) == (2, 8, 10)
    assert usage.status == "completed" and usage.response_time_ms is not None
    assert usage.time_to_first_token_ms is not None

    listed = http.get(f"/chats/{chat['id']}/messages", headers=headers).json()
    assert [(m["role"], m["content"]) for m in listed["data"]] == [
        ("user", "hello there"),
        ("assistant", STUB_REPLY_25),
    ]


def test_poll_only_and_only_message_uses_the_chat_defaults(http):
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers).json()  # echo, the test default
    accepted = _submit(http, headers, chat["id"], message="just poll me")
    reply = _poll(http, headers, accepted["reply_id"])
    assert reply["status"] == "completed"
    assert reply["content"] == "Echo: just poll me"
    assert reply["provider"] == "echo"


def test_two_providers_in_one_chat(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "stub-model"}, headers=headers
    ).json()
    first = _submit(http, headers, chat["id"], message="first question")
    assert _poll(http, headers, first["reply_id"])["status"] == "completed"
    second = _submit(
        http,
        headers,
        chat["id"],
        message="second question",
        provider="anthropic",
        model="stub-model",
    )
    reply = _poll(http, headers, second["reply_id"])
    assert reply["status"] == "completed", reply
    assert reply["provider"] == "anthropic"
    # Anthropic saw the history: both user messages and the first reply (8 words) = 12 words.
    assert reply["usage"]["prompt_tokens"] == 2 + 8 + 2
    assert _usage_row(second["reply_id"]).provider_name == "anthropic"


def test_late_reader_gets_everything_and_last_event_id_resumes(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "stub-model"}, headers=headers
    ).json()
    accepted = _submit(http, headers, chat["id"], message="late reader")
    _poll(http, headers, accepted["reply_id"])

    full = read_sse(http, accepted["stream_url"], headers)
    assert full.text == STUB_REPLY_25 and full.last.event == "done"

    middle = full.events[0].id
    rest = read_sse(http, accepted["stream_url"], headers | {"Last-Event-ID": middle})
    assert [e.id for e in rest.events] == [e.id for e in full.events[1:]]
    assert full.events[0].data["delta"] + rest.text == STUB_REPLY_25


def test_reader_that_disconnects_and_resumes_mid_generation(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats",
        json={"provider": "openai", "model": "stub-model+tokens=40+delay=50"},
        headers=headers,
    ).json()
    accepted = _submit(http, headers, chat["id"], message="slow one")
    first = read_sse(http, accepted["stream_url"], headers, stop_after=2)
    assert [e.event for e in first.events] == ["token", "token"]
    rest = read_sse(http, accepted["stream_url"], headers | {"Last-Event-ID": first.events[-1].id})
    assert rest.last.event == "done"
    expected = "".join(f"tok{i}" if i == 0 else f" tok{i}" for i in range(40))
    assert first.text + rest.text == expected


def test_retryable_429_is_retried_and_completes(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "fault-429-then-ok"}, headers=headers
    ).json()
    accepted = _submit(http, headers, chat["id"], message=f"rate limited {uuid.uuid4()}")
    stream = read_sse(http, accepted["stream_url"], headers)
    assert stream.last.event == "done"
    assert _poll(http, headers, accepted["reply_id"])["status"] == "completed"


def test_provider_500_marks_failed_and_stream_ends_with_error(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "fault-500"}, headers=headers
    ).json()
    accepted = _submit(http, headers, chat["id"], message="boom")
    stream = read_sse(http, accepted["stream_url"], headers)
    assert stream.last.event == "error"
    assert stream.last.data["status"] == "failed"
    reply = _poll(http, headers, accepted["reply_id"])
    assert reply["status"] == "failed"
    assert reply["error"] and "sk-test" not in reply["error"]


def test_stream_cut_midway_is_a_failure_not_a_clean_end(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "anthropic", "model": "fault-cut"}, headers=headers
    ).json()
    accepted = _submit(http, headers, chat["id"], message="cut me")
    stream = read_sse(http, accepted["stream_url"], headers)
    assert "done" not in [e.event for e in stream.events]
    assert stream.last.event == "error"
    reply = _poll(http, headers, accepted["reply_id"])
    assert reply["status"] == "failed"
    assert reply["content"].startswith("tok0")  # the partial text is kept
    assert reply["usage"]["estimated"] is True


def test_invalid_choices_are_rejected_and_nothing_is_enqueued(http):
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers).json()
    before = {q: _queue_length(q) for q in ("openai", "anthropic", "echo")}
    cases = [
        ({"message": "x", "provider": "nope"}, "Available providers"),
        ({"message": "x", "provider": "openai", "model": "gpt-99"}, "Available models"),
        ({"message": "x", "temperature": 7}, None),
        ({"message": "x", "max_tokens": 0}, None),
        ({"message": ""}, None),
        ({"message": "x", "api_base": "http://evil"}, None),
        ({"message": "x", "role": "system"}, None),
        ({"message": "a\u0000b"}, None),
    ]
    for body, expected in cases:
        response = http.post(f"/chats/{chat['id']}/messages", json=body, headers=headers)
        assert 400 <= response.status_code < 500, (body, response.text)
        if expected:
            assert expected in response.json()["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert {q: _queue_length(q) for q in before} == before


def test_idempotency_key_returns_the_first_reply(http):
    headers = register_and_login(http)
    chat = http.post("/chats", json={}, headers=headers).json()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = _submit(http, headers | key, chat["id"], message="once")
    again = _submit(http, headers | key, chat["id"], message="once")
    assert again["reply_id"] == first["reply_id"]
    assert again["message_id"] == first["message_id"]
    _poll(http, headers, first["reply_id"])
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2


def test_wait_true_returns_the_finished_reply(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "openai", "model": "stub-model"}, headers=headers
    ).json()
    response = http.post(
        f"/chats/{chat['id']}/messages?wait=true", json={"message": "block"}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["content"] == STUB_REPLY_25


def test_cancel_keeps_partial_text_and_usage(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats",
        json={"provider": "openai", "model": "stub-model+tokens=200+delay=20"},
        headers=headers,
    ).json()
    accepted = _submit(http, headers, chat["id"], message="long story")
    first = read_sse(http, accepted["stream_url"], headers, stop_after=2)
    assert first.events[0].event == "token"
    cancel = http.post(f"/messages/{accepted['reply_id']}/cancel", headers=headers)
    assert cancel.status_code == 200
    stream = read_sse(http, accepted["stream_url"], headers)
    assert stream.last.event == "done" and stream.last.data["status"] == "cancelled"
    reply = _poll(http, headers, accepted["reply_id"])
    assert reply["status"] == "cancelled"
    assert 0 < len(reply["content"].split()) < 200
    assert reply["usage"]["completion_tokens"] > 0 and reply["usage"]["estimated"] is True
    again = http.post(f"/messages/{accepted['reply_id']}/cancel", headers=headers)
    assert again.status_code == 409


def test_other_users_reply_is_404(http):
    alice = register_and_login(http)
    bob = register_and_login(http)
    chat = http.post("/chats", json={}, headers=alice).json()
    accepted = _submit(http, alice, chat["id"], message="mine")
    for url in (accepted["poll_url"], accepted["stream_url"]):
        assert http.get(url, headers=bob).status_code == 404
    assert http.post(f"/messages/{accepted['reply_id']}/cancel", headers=bob).status_code == 404
    assert (
        http.post(f"/chats/{chat['id']}/messages", json={"message": "x"}, headers=bob).status_code
        == 404
    )


def test_broker_down_at_submit_is_503_and_keeps_the_message(http, service_env, log_dir):
    dead = service_env | {"REDIS_URL": "redis://127.0.0.1:1/0"}
    process, url = start_api(dead, log_dir)
    try:
        with httpx.Client(base_url=url, timeout=30) as down:
            headers = register_and_login(down)
            chat = down.post("/chats", json={}, headers=headers).json()
            started = time.monotonic()
            response = down.post(
                f"/chats/{chat['id']}/messages", json={"message": "keep me"}, headers=headers
            )
            assert response.status_code == 503
            assert time.monotonic() - started < 10
            assert "stored" in response.json()["detail"]
            listed = down.get(f"/chats/{chat['id']}/messages", headers=headers).json()["data"]
            assert [(m["role"], m["status"]) for m in listed] == [
                ("user", None),
                ("assistant", "failed"),
            ]
            assert listed[0]["content"] == "keep me"
    finally:
        process.stop()


def test_idle_streams_get_heartbeats(http):
    headers = register_and_login(http)
    chat = http.post(
        "/chats",
        json={"provider": "openai", "model": "stub-model+tokens=2+delay=2500"},
        headers=headers,
    ).json()
    accepted = _submit(http, headers, chat["id"], message="take your time")
    with http.stream("GET", accepted["stream_url"], headers=headers) as response:
        lines = list(response.iter_lines())
    # SSE_HEARTBEAT_SECONDS is 2 in these tests; the provider is silent for 2.5 s per token.
    assert any(line.startswith(":") for line in lines)
    assert "event: done" in lines
