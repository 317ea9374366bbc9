"""Deleting a chat (issue 12, 2.5): its usage and cost stay (they are the billing record), a reply
still streaming is stopped and its usage recorded, and whoever waits for that reply gets a clean
end: an `error` event on the open stream, a 404 JSON for `?wait=true`."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ProviderUsage
from tests.e2e.harness import Process, SSEEvent, SSEResult, read_sse_within, wait_until
from tests.helpers import register_and_login

# 40 tokens, 100 ms apart: still streaming seconds after its first token.
SLOW_MODEL = "stub-model+tokens=40+delay=100"
DELETED = "The chat was deleted"


def _chat(http: httpx.Client, headers: dict[str, str], **body: str) -> str:
    chat = http.post("/chats", json=body, headers=headers)
    assert chat.status_code == 201, chat.text
    return str(chat.json()["id"])


def _submit(http: httpx.Client, headers: dict[str, str], chat_id: str, text: str) -> dict:
    accepted = http.post(f"/chats/{chat_id}/messages", json={"message": text}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return dict(accepted.json())


def _finished(http: httpx.Client, headers: dict[str, str], reply_id: str, worker: Process) -> None:
    def done() -> bool:
        return http.get(f"/messages/{reply_id}", headers=headers).json()["status"] == "completed"

    wait_until(done, 30, worker, interval=0.1)


def _usage(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    report = http.get("/usage", headers=headers)
    assert report.status_code == 200, report.text
    return list(report.json()["data"])


def _user_id(http: httpx.Client, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(http.get("/users/me", headers=headers).json()["id"])


def _usage_rows(user_id: uuid.UUID) -> list[ProviderUsage]:
    with session_scope() as session:
        return list(session.scalars(select(ProviderUsage).where(ProviderUsage.user_id == user_id)))


def test_deleting_a_chat_keeps_its_usage_and_cost(http, worker):
    headers = register_and_login(http)
    chat_id = _chat(http, headers, provider="echo")
    for text in ("one", "two words", "and three words"):
        _finished(http, headers, _submit(http, headers, chat_id, text)["reply_id"], worker)
    before = _usage(http, headers)
    assert sum(row["requests"] for row in before) == 3

    assert http.delete(f"/chats/{chat_id}", headers=headers).status_code == 204
    assert http.get(f"/chats/{chat_id}", headers=headers).status_code == 404
    assert _usage(http, headers) == before


def _stream_in_thread(
    api_url: str, headers: dict[str, str], stream_url: str, first_token: threading.Event
) -> Future[SSEResult]:
    def on_event(event: SSEEvent, _result: SSEResult) -> None:
        if event.event == "token":
            first_token.set()

    def read() -> SSEResult:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            return read_sse_within(client, stream_url, headers, 30, on_event)

    pool = ThreadPoolExecutor(1)
    future = pool.submit(read)
    pool.shutdown(wait=False)
    return future


def test_a_reply_streaming_when_its_chat_is_deleted_is_stopped_and_billed(http, worker, api_url):
    headers = register_and_login(http)
    user_id = _user_id(http, headers)
    chat_id = _chat(http, headers, provider="openai", model=SLOW_MODEL)
    accepted = _submit(http, headers, chat_id, "count slowly")
    first_token = threading.Event()
    reader = _stream_in_thread(api_url, headers, accepted["stream_url"], first_token)
    assert first_token.wait(20), "the reply never started streaming"

    assert http.delete(f"/chats/{chat_id}", headers=headers).status_code == 204

    # The open stream ends with an error event, not a cut body (which would raise here).
    stream = reader.result(timeout=35)
    assert stream.last.event == "error"
    assert stream.last.data["error"] == DELETED
    assert [event.event for event in stream.events].count("error") == 1
    gone = http.get(accepted["poll_url"], headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]

    # The worker stopped (a generation left to run would be `completed`) and kept the usage.
    wait_until(lambda: _usage_rows(user_id), 30, worker, interval=0.1)
    [row] = _usage_rows(user_id)
    assert (row.provider_name, row.model_name, row.status) == ("openai", SLOW_MODEL, "cancelled")
    assert (row.chat_id, row.message_id) == (None, None)
    assert row.completion_tokens and row.completion_tokens < 40
    assert [(r["provider"], r["model"], r["requests"]) for r in _usage(http, headers)] == [
        ("openai", SLOW_MODEL, 1)
    ]


def test_waiting_for_a_reply_whose_chat_is_deleted_answers_404(http, worker, api_url):
    headers = register_and_login(http)
    user_id = _user_id(http, headers)
    chat_id = _chat(http, headers, provider="anthropic", model=SLOW_MODEL)

    def submit_and_wait() -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            return client.post(
                f"/chats/{chat_id}/messages?wait=true",
                json={"message": "count slowly"},
                headers=headers,
            )

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(submit_and_wait)

        def reply_running() -> bool:
            listed = http.get(f"/chats/{chat_id}/messages", headers=headers).json()["data"]
            return any(m["role"] == "assistant" and m["status"] == "running" for m in listed)

        wait_until(reply_running, 20, worker, interval=0.1)
        assert http.delete(f"/chats/{chat_id}", headers=headers).status_code == 204
        answer = waiting.result(timeout=60)

    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == DELETED
    wait_until(lambda: _usage_rows(user_id), 30, worker, interval=0.1)
    assert [row.status for row in _usage_rows(user_id)] == ["cancelled"]
