"""`POST /v1/messages` at the API's edge: validation, Anthropic's error shapes, `x-api-key`.

No worker runs here: what is checked is what the API refuses (and that a refusal stores
nothing), and what it stores for a call it accepts. The replies themselves, streamed and not,
through the official anthropic SDK, are in tests/e2e/test_anthropic_compat.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from api.routes.anthropic_compat.routes import error_response
from shared.chats.submission import QUEUE_UNAVAILABLE, QueueUnavailable
from shared.db import session_scope
from shared.models import Chat, Message
from tests.helpers import register_and_login

URL = "/v1/messages"


def body(**changes: Any) -> dict[str, Any]:
    return {
        "model": "echo/echo-1",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello there"}],
    } | changes


@pytest.fixture
def sb_key(client: Any) -> str:
    headers = register_and_login(client)
    created = client.post("/auth/api-keys", json={"name": "anthropic"}, headers=headers)
    assert created.status_code == 201, created.text
    return created.json()["key"]


def key_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def assert_error(response: Any, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert set(payload["error"]) == {"type", "message"}
    return payload["error"]["message"]


def stored_counts() -> tuple[int, int]:
    with session_scope() as session:
        chats = session.scalar(select(func.count()).select_from(Chat))
        messages = session.scalar(select(func.count()).select_from(Message))
    return chats or 0, messages or 0


def test_no_credential_is_an_authentication_error(client: Any) -> None:
    assert_error(client.post(URL, json=body()), 401, "authentication_error")


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_a_wrong_key_is_an_authentication_error(client: Any, sb_key: str, header: str) -> None:
    wrong = sb_key[:-4] + "zzzz"
    value = wrong if header == "x-api-key" else f"Bearer {wrong}"
    response = client.post(URL, json=body(), headers={header: value})
    assert_error(response, 401, "authentication_error")
    assert wrong not in response.text
    assert stored_counts() == (0, 0)


def test_a_revoked_key_is_refused(client: Any) -> None:
    headers = register_and_login(client)
    created = client.post("/auth/api-keys", json={"name": "old"}, headers=headers).json()
    assert client.delete(f"/auth/api-keys/{created['id']}", headers=headers).status_code == 204
    response = client.post(URL, json=body(), headers=key_headers(created["key"]))
    assert_error(response, 401, "authentication_error")


def test_a_bad_key_is_refused_before_a_bad_body_is_read(client: Any) -> None:
    # The body's content is checked in the unit of work, after the caller is known.
    response = client.post(
        URL, json=body(stop_sequences=["x"]), headers={"x-api-key": "sb_not-a-key"}
    )
    assert_error(response, 401, "authentication_error")


@pytest.mark.parametrize(
    ("changes", "mentions"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "role"),
        ({"temperature": 1.5}, "temperature"),
        ({"model": ""}, "model"),
        ({"tools": [{"name": "search"}]}, "tools"),
        ({"stream": "yes"}, "stream"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"stop_sequences": [""]}, "stop_sequences"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_body_errors_are_invalid_request_errors(
    client: Any, sb_key: str, changes: dict[str, Any], mentions: str
) -> None:
    sent = {k: v for k, v in body(**changes).items() if v is not None}
    response = client.post(URL, json=sent, headers=key_headers(sb_key))
    assert mentions in assert_error(response, 400, "invalid_request_error")
    assert stored_counts() == (0, 0)


def test_a_body_that_is_not_json_is_an_invalid_request_error(client: Any, sb_key: str) -> None:
    response = client.post(
        URL,
        content=b"{not json",
        headers=key_headers(sb_key) | {"content-type": "application/json"},
    )
    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("changes", "mentions"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "only text content blocks",
        ),
        ({"system": [{"type": "document", "text": "x"}]}, "system.0"),
        ({"messages": [{"role": "user", "content": ""}]}, "must not be empty"),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "Hello,"},
                ]
            },
            "last message",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_and_nothing_stored(
    client: Any, sb_key: str, changes: dict[str, Any], mentions: str
) -> None:
    response = client.post(URL, json=body(**changes), headers=key_headers(sb_key))
    assert mentions in assert_error(response, 400, "invalid_request_error")
    assert stored_counts() == (0, 0)


def test_an_unknown_model_is_a_not_found_error(client: Any, sb_key: str) -> None:
    response = client.post(URL, json=body(model="no-such-model"), headers=key_headers(sb_key))
    assert "no-such-model" in assert_error(response, 404, "not_found_error")
    assert stored_counts() == (0, 0)


def test_a_model_two_providers_offer_must_be_named_with_its_provider(
    client: Any, sb_key: str
) -> None:
    # tests/conftest.py gives `stub-model` to both openai and anthropic.
    response = client.post(URL, json=body(model="stub-model"), headers=key_headers(sb_key))
    assert "provider/stub-model" in assert_error(response, 404, "not_found_error")


def test_other_routes_keep_the_native_error_shape(client: Any) -> None:
    headers = register_and_login(client)
    response = client.post("/chats", json={"title": 5}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"
    assert client.get("/chats").json()["error"] == "Unauthorized"


def test_an_accepted_call_is_stored_as_an_api_chat_with_its_whole_prompt(
    client: Any, sb_key: str, set_env: Callable[..., None]
) -> None:
    # No worker: the wait ends at once, and the answer says where the reply is.
    set_env(WAIT_TIMEOUT_SECONDS="0.01")
    response = client.post(
        URL,
        json=body(
            model="echo-1",
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            messages=[
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}
                    ],
                },
            ],
            temperature=0.5,
            metadata={"user_id": "someone"},
        ),
        headers=key_headers(sb_key),
    )
    message = assert_error(response, 504, "timeout_error")
    reply_id = response.headers["x-switchboard-reply-id"]
    assert f"/messages/{reply_id}" in message
    assert response.headers["x-should-retry"] == "false"
    with session_scope() as session:
        chat = session.scalars(select(Chat)).one()
        reply = session.get(Message, reply_id)
        assert reply is not None
        assert chat.kind == "api"
        assert (reply.provider_name, reply.model_name) == ("echo", "echo-1")
        assert (reply.max_tokens, reply.temperature) == (16, 0.5)
        assert reply.prompt == [
            {"role": "system", "content": "Be brief.\nBe kind."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
        ]


def test_a_bearer_token_works_too(client: Any, set_env: Callable[..., None]) -> None:
    set_env(WAIT_TIMEOUT_SECONDS="0.01")
    response = client.post(URL, json=body(), headers=register_and_login(client))
    assert_error(response, 504, "timeout_error")
    assert stored_counts() == (1, 2)


def test_the_queue_being_down_is_an_overloaded_error() -> None:
    response = error_response(QueueUnavailable(QUEUE_UNAVAILABLE, headers={"Retry-After": "5"}))
    assert response is not None
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.body.decode() == (
        '{"type":"error","error":{"type":"overloaded_error","message":"' + QUEUE_UNAVAILABLE + '"}}'
    )
