"""The OpenAI-compatible API's validation and error shapes, through the in-process app.

No worker runs here (the e2e tests generate replies): these cover what is answered before a
reply exists, and that a refused request stores nothing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from api.reply_stream import REPLY_ID_HEADER
from shared.channel import TokenChannel
from shared.db import session_scope
from shared.models import Chat, Message
from tests.conftest import TEST_REDIS_URL
from tests.helpers import register_and_login

URL = "/v1/chat/completions"


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "echo/echo-1", "messages": [{"role": "user", "content": "hi"}]} | fields


def _assert_openai_error(response: Any, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def _stored_rows() -> tuple[int, int]:
    with session_scope() as session:
        chats = session.scalar(select(func.count()).select_from(Chat))
        messages = session.scalar(select(func.count()).select_from(Message))
    return chats, messages


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sb_not-a-key"}, {"Authorization": "Bearer nonsense"}],
    ids=["none", "bad sb_ key", "bad token"],
)
def test_missing_or_bad_credentials_are_401_invalid_api_key(client, headers):
    for response in (
        client.post(URL, json=_body(), headers=headers),
        client.get("/v1/models", headers=headers),
    ):
        _assert_openai_error(response, 401, "invalid_request_error", "invalid_api_key")
    assert _stored_rows() == (0, 0)


def test_the_native_api_keeps_its_own_error_shape(client):
    response = client.get("/chats")
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize(
    ("model", "mentions"),
    [
        ("gpt-9", "gpt-9"),
        ("openai/gpt-9", "openai/gpt-9"),
        ("nope/echo-1", "nope/echo-1"),
        # Offered by two providers: the message says to name one.
        ("stub-model", "openai/stub-model"),
        ("pool:none", "none"),
    ],
)
def test_an_unknown_model_is_404_model_not_found_and_stores_nothing(client, model, mentions):
    headers = register_and_login(client)
    response = client.post(URL, json=_body(model=model), headers=headers)
    error = _assert_openai_error(response, 404, "invalid_request_error", "model_not_found")
    assert error["param"] == "model"
    assert mentions.split("/")[-1] in error["message"]
    assert _stored_rows() == (0, 0)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0]"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "5"}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"stop": "x" * 201}, "stop"),
        ({"stop": [5]}, "stop"),
        ({"stop": ["a\x00"]}, "stop"),
        ({"n": 2}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
    ],
)
def test_a_bad_body_is_400_invalid_request_error_naming_the_param(client, fields, param):
    headers = register_and_login(client)
    response = client.post(URL, json=_body(**fields), headers=headers)
    error = _assert_openai_error(response, 400, "invalid_request_error")
    assert error["param"] == param, error
    assert _stored_rows() == (0, 0)


def test_the_last_message_must_be_the_users(client):
    headers = register_and_login(client)
    body = _body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    response = client.post(URL, json=body, headers=headers)
    _assert_openai_error(response, 400, "invalid_request_error")
    assert _stored_rows() == (0, 0)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b"\xff\xfe", b""],
    ids=["broken", "array", "bytes", "empty"],
)
def test_a_body_that_is_not_a_json_object_is_400(client, content):
    headers = register_and_login(client) | {"Content-Type": "application/json"}
    response = client.post(URL, content=content, headers=headers)
    _assert_openai_error(response, 400, "invalid_request_error")


def test_unknown_fields_are_ignored_and_null_options_accepted(client, set_env):
    # No worker runs here: a short wait ends in 504, after the call was accepted and stored.
    set_env(WAIT_TIMEOUT_SECONDS="0.5")
    headers = register_and_login(client)
    body = _body(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "assistant", "content": None},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        stop=None,
        n=1,
        user="someone",
        seed=7,
        logprobs=False,
        stream_options=None,
        max_completion_tokens=20,
        max_tokens=5,
        temperature=0,
    )
    response = client.post(URL, json=body, headers=headers)
    error = _assert_openai_error(response, 504, "server_error", "timeout")
    reply_id = response.headers[REPLY_ID_HEADER]
    assert f"/messages/{reply_id}" in error["message"]
    with session_scope() as session:
        reply = session.get(Message, reply_id)
        assert reply is not None and reply.status == "queued"
        assert reply.prompt == [
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "a\nb"},
        ]
        assert reply.max_tokens == 20  # max_completion_tokens wins over the older max_tokens
        assert reply.temperature == 0
        chat = session.get(Chat, reply.chat_id)
        assert chat is not None and chat.kind == "api"


def test_models_lists_provider_models_in_openai_shape(client):
    headers = register_and_login(client)
    response = client.get("/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert ids["echo/echo-1"] == {
        "id": "echo/echo-1",
        "object": "model",
        "created": 0,
        "owned_by": "echo",
    }
    assert "openai/stub-model" in ids and "anthropic/stub-model" in ids


def test_openapi_documents_the_v1_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    responses = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "429", "502", "503", "504"} <= set(responses)
    assert "503" in paths["/v1/models"]["get"]["responses"]


# --- streaming, with the token channel written by the test in the worker's place -------------


def _newest_reply_id() -> uuid.UUID | None:
    with session_scope() as session:
        return session.scalar(
            select(Message.id)
            .where(Message.role == "assistant")
            .order_by(Message.created_at.desc())
        )


def _stream_lines(
    client: Any, events: list[tuple[str, dict[str, Any]]], **fields: Any
) -> tuple[str, list[str]]:
    """The body of a streamed call whose reply's events are `events` (published as a worker
    would, once the reply is stored)."""
    headers = register_and_login(client)
    channel = TokenChannel(redis.Redis.from_url(TEST_REDIS_URL), 60, 0.0)

    def publish() -> None:
        deadline = time.monotonic() + 10
        while (reply_id := _newest_reply_id()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        channel.append(reply_id, events)

    publisher = threading.Thread(target=publish)
    publisher.start()
    response = client.post(URL, json=_body(stream=True, **fields), headers=headers)
    publisher.join()
    channel.client.close()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers[REPLY_ID_HEADER] == str(_newest_reply_id())
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return response.headers[REPLY_ID_HEADER], [line.removeprefix("data: ") for line in lines]


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "estimated": False}


def test_a_stream_maps_tokens_the_end_and_usage_to_chunks(client):
    events = [
        ("reset", {"reason": "redelivered"}),  # before any token: invisible
        ("token", {"delta": "Hel"}),
        ("token", {"delta": "lo"}),
        ("done", {"status": "completed", "usage": USAGE, "finish_reason": "max_tokens"}),
    ]
    reply_id, lines = _stream_lines(client, events, stream_options={"include_usage": True})
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert {c["id"] for c in chunks} == {f"chatcmpl-{uuid.UUID(reply_id).hex}"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"echo/echo-1"}
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_a_stream_without_include_usage_ends_at_the_finish_chunk(client):
    events = [
        ("token", {"delta": "x"}),
        ("done", {"status": "completed", "usage": USAGE, "finish_reason": None}),
    ]
    _, lines = _stream_lines(client, events)
    assert lines[-1] == "[DONE]"
    last = json.loads(lines[-2])
    assert last["choices"][0]["finish_reason"] == "stop" and "usage" not in last


@pytest.mark.parametrize(
    ("end", "says"),
    [
        (("restart", {"provider": "anthropic", "model": "m", "reason": "cut"}), "mid-stream"),
        (("reset", {"reason": "redelivered"}), "mid-stream"),
        (("error", {"status": "failed", "error": "upstream said no", "usage": None}), "no"),
    ],
    ids=["restart", "reset", "error"],
)
def test_a_start_over_or_failure_after_tokens_ends_with_an_error_line(client, end, says):
    reply_id, lines = _stream_lines(client, [("token", {"delta": "partial"}), end])
    assert "[DONE]" not in lines
    error = json.loads(lines[-1])["error"]
    assert error["type"] == "server_error"
    assert says in error["message"] and f"GET /messages/{reply_id}" in error["message"]
    assert [json.loads(line)["choices"][0]["delta"] for line in lines[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "partial"},
    ]
