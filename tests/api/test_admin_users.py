"""The admin API's gate (every /admin route) and the users list / flags."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import ProviderUsage, User
from tests.helpers import register_and_login


def make_admin(client, email: str | None = None) -> tuple[dict[str, str], str]:
    email = email or f"admin-{uuid.uuid4().hex[:8]}@example.com"
    headers = register_and_login(client, email)
    with session_scope() as session:
        session.execute(update(User).where(User.email == email).values(is_admin=True))
    return headers, email


def user_id(email: str) -> uuid.UUID:
    with session_scope() as session:
        return session.scalar(select(User.id).where(User.email == email))


def add_usage(email: str, rows: list[tuple[int, int, str | None]]) -> None:
    with session_scope() as session:
        uid = session.scalar(select(User.id).where(User.email == email))
        for prompt, completion, cost in rows:
            session.add(
                ProviderUsage(
                    user_id=uid,
                    provider_name="openai",
                    model_name="gpt-4",
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    tokens_used=prompt + completion,
                    cost=Decimal(cost) if cost else None,
                    status="completed",
                )
            )


ECHO_TARGET = {"provider": "echo", "model": "echo-1"}
# A value for each path parameter an admin route may have; a new parameter fails the test
# until it is given one here, so no admin route escapes it.
PATH_VALUES = {
    "{user_id}": str(uuid.uuid4()),
    "{name}": "openai",
    "{model}": "meta-llama/Llama-3-8B",
    "{provider}": "openai",
    "{experiment_id}": "1",
}
# A valid body for each admin route whose body has required fields (others get `{}`): an
# invalid one would be answered 422 before the admin check could answer 403.
REQUEST_BODIES = {
    ("POST", "/admin/providers"): {"provider_name": "gate", "adapter": "echo"},
    ("POST", "/admin/providers/{name}/models"): {"model_name": "gate-model"},
    ("PUT", "/admin/routing/chains/{provider}/{model}"): {"targets": [ECHO_TARGET]},
    ("PUT", "/admin/routing/pools/{name}"): {"deployments": [ECHO_TARGET]},
    ("POST", "/admin/routing/experiments"): {
        "name": "gate",
        "control": ECHO_TARGET,
        "variant": {"provider": "echo", "model": "echo-2"},
    },
}


def admin_routes() -> list[tuple[str, str, str]]:
    """(method, template, path) of every /admin operation the app serves, from its OpenAPI
    document (FastAPI includes routers lazily, so app.routes does not list them)."""
    from api.main import app

    found = []
    for template, operations in app.openapi()["paths"].items():
        if not template.startswith("/admin"):
            continue
        path = template
        for name, value in PATH_VALUES.items():
            path = path.replace(name, value)
        assert "{" not in path, f"give {template}'s parameter a value in PATH_VALUES"
        found.extend((method.upper(), template, path) for method in sorted(operations))
    return found


def test_every_admin_route_refuses_anonymous_and_non_admin_callers(client):
    routes = admin_routes()
    templates = {(method, template) for method, template, _ in routes}
    assert {
        ("GET", "/admin/users"),
        ("PATCH", "/admin/users/{user_id}"),
        ("GET", "/admin/usage"),
        ("GET", "/admin/providers"),
        ("POST", "/admin/providers"),
        ("GET", "/admin/providers/{name}"),
        ("PATCH", "/admin/providers/{name}"),
        ("DELETE", "/admin/providers/{name}"),
        ("GET", "/admin/providers/{name}/models"),
        ("POST", "/admin/providers/{name}/models"),
        ("PATCH", "/admin/providers/{name}/models/{model}"),
        ("DELETE", "/admin/providers/{name}/models/{model}"),
        ("POST", "/admin/providers/{name}/test"),
        ("GET", "/admin/providers/{name}/discover"),
        ("GET", "/admin/queues"),
    } <= templates
    headers = register_and_login(client)
    for method, template, path in routes:
        body = None
        if method in {"POST", "PATCH", "PUT"}:
            body = REQUEST_BODIES.get((method, template), {})
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"] == "Forbidden"


def test_users_list_pages_searches_and_sums_each_users_usage(client):
    headers, admin_email = make_admin(client, "aaa-admin@example.com")
    emails = [f"user-{i:02d}@example.com" for i in range(5)]
    for email in emails:
        register_and_login(client, email)
    add_usage(emails[1], [(10, 5, "0.000600"), (20, 5, "0.000900"), (7, 3, None)])
    add_usage(emails[2], [(1, 1, None)])

    page = client.get("/admin/users?limit=3&offset=0", headers=headers).json()
    assert page["count"] == 6
    assert [u["email"] for u in page["data"]] == [admin_email, emails[0], emails[1]]
    by_email = {u["email"]: u for u in page["data"]}
    assert by_email[emails[1]]["usage"] == {
        "requests": 3,
        "prompt_tokens": 37,
        "completion_tokens": 13,
        "total_tokens": 50,
        "cost": "0.001500",
    }
    assert by_email[emails[0]]["usage"]["requests"] == 0
    assert by_email[emails[0]]["usage"]["cost"] is None
    assert by_email[admin_email]["is_admin"] is True and by_email[emails[0]]["is_admin"] is False

    second = client.get("/admin/users?limit=3&offset=3", headers=headers).json()
    assert [u["email"] for u in second["data"]] == emails[2:]
    assert second["data"][0]["usage"]["requests"] == 1

    found = client.get("/admin/users?q=USER-0", headers=headers).json()
    assert found["count"] == 5
    # LIKE wildcards in q are taken literally.
    assert client.get("/admin/users?q=user_0", headers=headers).json()["count"] == 0
    assert client.get("/admin/users?limit=0", headers=headers).status_code == 422


def test_disabling_a_user_stops_their_token_and_api_key(client):
    headers, _ = make_admin(client)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    user_headers = register_and_login(client, email)
    key = client.post("/auth/api-keys", json={"name": "ci"}, headers=user_headers)
    key_headers = {"Authorization": f"Bearer {key.json()['key']}"}
    assert client.get("/users/me", headers=key_headers).status_code == 200

    answer = client.patch(
        f"/admin/users/{user_id(email)}", json={"is_active": False}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["is_active"] is False
    assert client.get("/users/me", headers=user_headers).status_code == 401
    assert client.get("/users/me", headers=key_headers).status_code == 401
    login = client.post(
        "/auth/token", data={"username": email, "password": "correct horse battery"}
    )
    assert login.status_code == 401

    client.patch(f"/admin/users/{user_id(email)}", json={"is_active": True}, headers=headers)
    assert client.get("/users/me", headers=user_headers).status_code == 200


def test_promoting_a_user_opens_the_admin_api_to_them(client):
    headers, _ = make_admin(client)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    user_headers = register_and_login(client, email)
    assert client.get("/admin/users", headers=user_headers).status_code == 403
    answer = client.patch(
        f"/admin/users/{user_id(email)}", json={"is_admin": True}, headers=headers
    )
    assert answer.json()["is_admin"] is True
    assert client.get("/admin/users", headers=user_headers).status_code == 200


@pytest.mark.parametrize("change", [{"is_admin": False}, {"is_active": False}])
def test_an_admin_cannot_demote_or_disable_themselves(client, change):
    headers, email = make_admin(client)
    answer = client.patch(f"/admin/users/{user_id(email)}", json=change, headers=headers)
    assert answer.status_code == 409
    assert answer.json()["error"] == "Conflict"
    assert client.get("/admin/users", headers=headers).status_code == 200


def test_patch_refuses_bad_input_and_unknown_users(client):
    headers, _ = make_admin(client)
    unknown = client.patch(f"/admin/users/{uuid.uuid4()}", json={"is_admin": True}, headers=headers)
    assert unknown.status_code == 404
    assert (
        client.patch(f"/admin/users/{uuid.uuid4()}", json={"is_admin": 1}, headers=headers)
    ).status_code == 422
    assert (
        client.patch(f"/admin/users/{uuid.uuid4()}", json={"email": "x"}, headers=headers)
    ).status_code == 422
    assert client.patch("/admin/users/not-a-uuid", json={}, headers=headers).status_code == 422
