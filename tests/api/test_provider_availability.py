"""`GET /providers` lists disabled providers too, each with why a submission would be refused
(`unavailable_reason`), decided by the same code as the admin API's `unusable_reason`."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet

from tests.api.test_admin_users import make_admin
from tests.helpers import register_and_login

CANARY = "sk-canary-not-a-real-key-0001"


def providers(client: Any, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = client.get("/providers", headers=headers)
    assert answer.status_code == 200, answer.text
    return {p["name"]: p for p in answer.json()}


def admin_view(client: Any, admin: dict[str, str], name: str) -> dict[str, Any]:
    answer = client.get(f"/admin/providers/{name}", headers=admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def submit(client: Any, headers: dict[str, str], provider: str) -> Any:
    chat = client.post("/chats", json={"provider": "anthropic"}, headers=headers).json()
    return client.post(
        f"/chats/{chat['id']}/messages",
        json={"message": "hello", "provider": provider},
        headers=headers,
    )


def test_usable_providers_have_no_reason(client):
    listed = providers(client, register_and_login(client))
    for name in ("echo", "openai", "anthropic", "ollama"):
        assert listed[name]["is_enabled"] is True
        assert listed[name]["unavailable_reason"] is None, name


def test_a_provider_an_admin_disabled_stays_listed_with_the_reason(client):
    admin, _ = make_admin(client)
    user = register_and_login(client)
    disabled = client.patch("/admin/providers/openai", json={"is_enabled": False}, headers=admin)
    assert disabled.status_code == 200, disabled.text

    openai = providers(client, user)["openai"]
    assert openai["is_enabled"] is False
    assert openai["unavailable_reason"] == "disabled by an admin"
    assert openai["models"] == ["gpt-4", "gpt-3.5-turbo", "stub-model"]  # still shown
    assert admin_view(client, admin, "openai")["unusable_reason"] == "disabled by an admin"
    assert submit(client, user, "openai").status_code == 422

    client.patch("/admin/providers/openai", json={"is_enabled": True}, headers=admin)
    assert providers(client, user)["openai"]["unavailable_reason"] is None
    assert submit(client, user, "openai").status_code == 202


def test_a_provider_without_enabled_models_says_so(client):
    admin, _ = make_admin(client)
    user = register_and_login(client)
    for model in ("echo-1", "echo-2"):
        answer = client.patch(
            f"/admin/providers/echo/models/{model}", json={"is_enabled": False}, headers=admin
        )
        assert answer.status_code == 200, answer.text

    echo = providers(client, user)["echo"]
    assert echo["is_enabled"] is True and echo["models"] == []
    assert echo["unavailable_reason"] == "no enabled models"
    # The admin API says the same, and what to do about it.
    assert admin_view(client, admin, "echo")["unusable_reason"].startswith("no enabled models: ")
    assert submit(client, user, "echo").status_code == 422


def test_a_provider_without_its_api_key_says_so(client, set_env):
    set_env(OPENAI_API_KEY="")
    admin, _ = make_admin(client)
    user = register_and_login(client)
    openai = providers(client, user)["openai"]
    assert openai["is_enabled"] is False
    assert openai["unavailable_reason"] == "no API key"
    assert admin_view(client, admin, "openai")["unusable_reason"] == (
        "no API key: set OPENAI_API_KEY"
    )
    assert submit(client, user, "openai").status_code == 422


def test_only_the_default_provider_is_usable_without_multi_provider(client, set_env):
    set_env(MULTI_PROVIDER_ENABLED="false")
    listed = providers(client, register_and_login(client))
    assert listed["echo"]["unavailable_reason"] is None  # DEFAULT_PROVIDER in the tests
    assert listed["openai"]["is_enabled"] is False
    assert listed["openai"]["unavailable_reason"] == "only the default provider takes requests"


def test_an_admin_provider_whose_key_cannot_be_decrypted_says_so(client, set_env):
    set_env(PROVIDER_KEYS_SECRET=Fernet.generate_key().decode())
    admin, _ = make_admin(client)
    user = register_and_login(client)
    created = client.post(
        "/admin/providers",
        json={
            "provider_name": "vllm",
            "adapter": "openai_compatible",
            "api_endpoint": "http://127.0.0.1:9/v1",
            "api_key": CANARY,
            "models": ["stub-model"],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert providers(client, user)["vllm"]["unavailable_reason"] is None

    set_env(PROVIDER_KEYS_SECRET=Fernet.generate_key().decode())  # not the one that encrypted it
    vllm = providers(client, user)["vllm"]
    assert vllm["is_enabled"] is False
    assert vllm["unavailable_reason"] == "its stored API key cannot be read"
    assert "cannot be decrypted" in admin_view(client, admin, "vllm")["unusable_reason"]
    assert CANARY not in str(vllm)
