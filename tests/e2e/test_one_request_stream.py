"""One-request streaming on the native API: POST /chats/{id}/messages with
`Accept: text/event-stream` answers the reply's events, the same ones /messages/{id}/stream
sends, with the reply's id in `x-switchboard-reply-id`; a client that leaves mid-stream still
gets a stored, billed reply, and resumes where it left off with Last-Event-ID."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import ProviderUsage
from tests.e2e.harness import iter_sse, read_sse_within, wait_until
from tests.helpers import register_and_login
from tests.stubs import reply_text

SLOW = "stub-model+tokens=40+delay=50"


def _chat(http, headers, model: str) -> str:
    chat = http.post("/chats", json={"provider": "openai", "model": model}, headers=headers)
    assert chat.status_code == 201, chat.text
    return chat.json()["id"]


def _submit_streaming(http, headers, chat_id: str, body: dict) -> tuple[str, list]:
    """One request: the reply's id and every event of its stream, to the end."""
    with http.stream(
        "POST",
        f"/chats/{chat_id}/messages",
        json=body,
        headers=headers | {"Accept": "text/event-stream"},
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        return answer.headers["x-switchboard-reply-id"], list(iter_sse(answer.iter_lines()))


def test_the_submission_answers_with_the_reply_stream(http, worker):
    headers = register_and_login(http)
    chat_id = _chat(http, headers, "stub-model+tokens=8")
    reply_id, events = _submit_streaming(http, headers, chat_id, {"message": "hi"})
    assert [e.event for e in events][-1] == "done"
    text = "".join(e.data["delta"] for e in events if e.event == "token")
    assert text == reply_text(8)
    stored = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert stored["content"] == text and stored["status"] == "completed"
    # The same events, with the same ids, as the reply's own stream.
    again = read_sse_within(http, f"/messages/{reply_id}/stream", headers, 20)
    assert [(e.id, e.event) for e in again.events] == [(e.id, e.event) for e in events]


def test_stop_sequences_end_the_native_reply(http, worker):
    headers = register_and_login(http)
    chat_id = _chat(http, headers, "stub-model+tokens=8")
    body = {"message": "hi", "stop": [" tok5"]}
    reply_id, events = _submit_streaming(http, headers, chat_id, body)
    assert "".join(e.data["delta"] for e in events if e.event == "token") == reply_text(5)
    stored = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert (stored["content"], stored["finish_reason"]) == (reply_text(5), "stop")
    assert stored["usage"]["completion_tokens"] == 5


def test_a_client_that_leaves_mid_stream_still_gets_a_stored_billed_reply(http, worker):
    headers = register_and_login(http)
    chat_id = _chat(http, headers, SLOW)
    seen = []
    with http.stream(
        "POST",
        f"/chats/{chat_id}/messages",
        json={"message": "hi"},
        headers=headers | {"Accept": "text/event-stream"},
    ) as answer:
        reply_id = answer.headers["x-switchboard-reply-id"]
        for event in iter_sse(answer.iter_lines()):
            seen.append(event)
            if len(seen) == 3:
                break  # the client goes away after three events

    def completed() -> bool:
        reply = http.get(f"/messages/{reply_id}", headers=headers).json()
        return reply["status"] == "completed"

    wait_until(completed, 30, worker, interval=0.1)
    assert http.get(f"/messages/{reply_id}", headers=headers).json()["content"] == reply_text(40)
    with session_scope() as session:
        usage = session.scalar(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
        )
    assert usage is not None and usage.completion_tokens == 40
    # Resumed after the last event it saw: exactly the rest.
    rest = read_sse_within(
        http, f"/messages/{reply_id}/stream", headers | {"Last-Event-ID": seen[-1].id}, 20
    )
    text = "".join(e.data["delta"] for e in seen + rest.events if e.event == "token")
    assert text == reply_text(40)


def test_without_the_accept_header_the_submission_is_a_202_naming_its_reply(http, worker):
    headers = register_and_login(http)
    chat_id = _chat(http, headers, "stub-model+tokens=8")
    accepted = http.post(f"/chats/{chat_id}/messages", json={"message": "hi"}, headers=headers)
    assert accepted.status_code == 202
    reply_id = accepted.json()["reply_id"]
    assert accepted.headers["x-switchboard-reply-id"] == reply_id
    # The header names the reply that is then generated (and nothing is left running when the
    # tables are emptied after the test).
    stream = read_sse_within(http, f"/messages/{reply_id}/stream", headers, 20)
    assert stream.text == reply_text(8) and stream.last.event == "done"
