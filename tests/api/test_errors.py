from __future__ import annotations

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Chat
from tests.helpers import register_and_login


def _chat_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Chat)) or 0


def test_malformed_json_is_422_json(client):
    headers = register_and_login(client) | {"Content-Type": "application/json"}
    response = client.post("/chats", content=b'{"title": ', headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()
    assert _chat_count() == 0


def test_wrong_types_and_unknown_fields_are_422(client):
    headers = register_and_login(client)
    assert client.post("/chats", json={"title": 5}, headers=headers).status_code == 422
    assert client.post("/chats", json=["a"], headers=headers).status_code == 422
    smuggled = client.post("/chats", json={"title": "x", "user_id": "someone"}, headers=headers)
    assert smuggled.status_code == 422
    assert _chat_count() == 0


def test_unknown_and_malformed_ids(client):
    headers = register_and_login(client)
    assert (
        client.get("/chats/00000000-0000-0000-0000-000000000000", headers=headers).status_code
        == 404
    )
    not_uuid = client.get("/chats/not-a-uuid", headers=headers)
    assert not_uuid.status_code == 422 and "detail" in not_uuid.json()
    assert client.get("/no-such-route").json()["detail"] == "Not Found"


def test_oversized_body_is_413_and_changes_nothing(client):
    headers = register_and_login(client)
    huge = '{"title": "' + "x" * 2_000_000 + '"}'
    response = client.post(
        "/chats", content=huge, headers=headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request body exceeds")
    assert _chat_count() == 0


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "redis": True}


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/auth/register",
        "/auth/token",
        "/auth/api-keys",
        "/auth/api-keys/{key_id}",
        "/users/me",
        "/chats",
        "/chats/{chat_id}",
        "/chats/{chat_id}/messages",
        "/system-prompts",
        "/system-prompts/{prompt_id}",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths, path
    create_chat = paths["/chats"]["post"]
    assert "requestBody" in create_chat
    assert "201" in create_chat["responses"]
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]


def test_nul_characters_are_bad_input_not_server_errors(client):
    headers = register_and_login(client)
    nul = "a\u0000b"
    assert client.post("/chats", json={"title": nul}, headers=headers).status_code == 422
    assert (
        client.post(
            "/system-prompts", json={"name": "n", "content": nul}, headers=headers
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/auth/register", json={"email": "x@example.com", "password": nul * 5}
        ).status_code
        == 422
    )
    assert client.post("/auth/token", data={"username": nul, "password": "x"}).status_code == 401
    assert client.get("/providers/a%00b/models", headers=headers).status_code == 404
    assert _chat_count() == 0


def test_oversized_chunked_body_is_413_and_changes_nothing(client):
    headers = register_and_login(client)

    def chunks():  # no Content-Length: the size is only known while the body arrives
        yield b'{"title": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/chats", content=chunks(), headers=headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert response.json()["detail"].startswith("Request body exceeds")
    assert _chat_count() == 0
