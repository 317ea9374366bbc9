from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import ApiKey, User
from tests.helpers import register_and_login


def test_register_login_and_me(client):
    response = client.post(
        "/auth/register", json={"email": "Ada@Example.com", "password": "correct horse battery"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert "password" not in response.text and "hash" not in response.text

    token = client.post(
        "/auth/token", data={"username": "ada@example.com", "password": "correct horse battery"}
    ).json()
    assert token["token_type"] == "bearer"
    me = client.get("/users/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == body["id"]


def test_password_is_stored_hashed(client):
    register_and_login(client, "hash@example.com", password="a long secret phrase")
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "hash@example.com"))
        assert user.password_hash.startswith("$argon2")
        assert "a long secret phrase" not in user.password_hash


def test_duplicate_email_is_409_and_creates_nothing(client):
    register_and_login(client, "dup@example.com")
    again = client.post("/auth/register", json={"email": "dup@example.com", "password": "x" * 12})
    assert again.status_code == 409
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    register_and_login(client, "pw@example.com")
    wrong = client.post("/auth/token", data={"username": "pw@example.com", "password": "nope"})
    unknown = client.post("/auth/token", data={"username": "no@example.com", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_invalid_tokens_are_rejected(client):
    assert client.get("/users/me").status_code == 401
    bad = client.get("/users/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    assert bad.json()["detail"]


def test_api_key_lifecycle(client):
    headers = register_and_login(client)
    created = client.post("/auth/api-keys", json={"name": "laptop"}, headers=headers)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("sb_")

    listed = client.get("/auth/api-keys", headers=headers).json()
    assert [k["name"] for k in listed] == ["laptop"]
    assert "key" not in listed[0] and key not in str(listed)
    with session_scope() as session:
        stored = session.scalar(select(ApiKey))
        assert stored.key_hash != key and key not in stored.key_hash

    key_headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/users/me", headers=key_headers).status_code == 200

    assert (
        client.delete(f"/auth/api-keys/{created.json()['id']}", headers=headers).status_code == 204
    )
    assert client.get("/users/me", headers=key_headers).status_code == 401
    assert client.get("/auth/api-keys", headers=headers).json() == []


def test_other_users_api_key_cannot_be_revoked(client):
    alice = register_and_login(client)
    bob = register_and_login(client)
    key_id = client.post("/auth/api-keys", json={"name": "a"}, headers=alice).json()["id"]
    assert client.delete(f"/auth/api-keys/{key_id}", headers=bob).status_code == 404
    assert len(client.get("/auth/api-keys", headers=alice).json()) == 1


def test_register_validation(client):
    short = client.post("/auth/register", json={"email": "a@example.com", "password": "pw123"})
    assert short.status_code == 422
    assert "pw123" not in short.text  # submitted values are not echoed back
    bad_email = client.post("/auth/register", json={"email": "nope", "password": "x" * 12})
    assert bad_email.status_code == 422
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_an_api_key_records_its_use_to_the_minute_and_stops_with_its_user(client):
    headers = register_and_login(client)
    key = client.post("/auth/api-keys", json={"name": "ci"}, headers=headers).json()["key"]
    key_headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/auth/api-keys", headers=headers).json()[0]["last_used_at"] is None

    assert client.get("/users/me", headers=key_headers).status_code == 200
    first = client.get("/auth/api-keys", headers=headers).json()[0]["last_used_at"]
    assert first is not None
    assert client.get("/users/me", headers=key_headers).status_code == 200
    # Used again within the minute: the stored time stays (no write per call).
    assert client.get("/auth/api-keys", headers=headers).json()[0]["last_used_at"] == first
    with session_scope() as session:
        row = session.scalar(select(ApiKey))
        row.last_used_at -= dt.timedelta(minutes=2)
        stale = row.last_used_at
    assert client.get("/users/me", headers=key_headers).status_code == 200
    with session_scope() as session:
        assert session.scalar(select(ApiKey.last_used_at)) > stale

    with session_scope() as session:
        session.scalar(select(User).where(User.email != "")).is_active = False
    assert client.get("/users/me", headers=key_headers).status_code == 401
