"""/admin/providers (issue 13 item 2): providers and models edited at run time, keys write-only,
endpoints checked against the SSRF policy, probes and discovery against a stub server.

The admin gate (401 anonymous, 403 non-admin) of these routes is tested with every other
/admin route, from the OpenAPI document, in tests/api/test_admin_users.py.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ProviderCatalog, ProviderConfigRow
from shared.providers import endpoints
from shared.settings import get_settings
from tests.api.test_admin_users import admin_routes, make_admin
from tests.helpers import register_and_login
from tests.stubs._server import Request, Response
from tests.stubs.openai_stub import OpenAIStub, _error

CANARY = "sk-canary-not-a-real-key-0001"
WRONG_KEY = "sk-canary-wrong-not-a-real-key"
STUB_MODELS = ("stub-model", "llama3.1:8b", "meta-llama/Llama-3-8B", "gpt-4o")


class KeyCheckingStub(OpenAIStub):
    """The OpenAI stub, whose /v1/models accepts one key only (the real API's 401 otherwise,
    with the masked key it echoes)."""

    def __init__(self, key: str) -> None:
        super().__init__(models=STUB_MODELS)
        self.key = key

    def _models(self, request: Request) -> Response:
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ")
        if supplied != self.key:
            return _error(
                401,
                f"Incorrect API key provided: {supplied[:3]}********{supplied[-4:]}.",
                "invalid_request_error",
                "invalid_api_key",
            )
        return super()._models(request)


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with KeyCheckingStub(CANARY).serve_in_thread() as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def keys_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PROVIDER_KEYS_SECRET for storing keys, in the settings the app reads."""
    secret = Fernet.generate_key().decode()
    monkeypatch.setenv("PROVIDER_KEYS_SECRET", secret)
    get_settings.cache_clear()
    yield secret
    get_settings.cache_clear()


@pytest.fixture
def admin(client: Any) -> dict[str, str]:
    return make_admin(client)[0]


def create(client: Any, headers: dict[str, str], **fields: Any) -> Any:
    # Port 9 (discard): nothing listens there, so a probe finds the provider unreachable.
    body = {
        "provider_name": "vllm",
        "adapter": "openai_compatible",
        "api_endpoint": "http://127.0.0.1:9/v1",
    } | fields
    return client.post("/admin/providers", json=body, headers=headers)


def submit(client: Any, headers: dict[str, str], chat_id: str, text: str = "hello") -> Any:
    return client.post(f"/chats/{chat_id}/messages", json={"message": text}, headers=headers)


def catalog_version() -> int:
    with session_scope() as session:
        return session.scalar(select(ProviderCatalog.version)) or 0


# -- providers --------------------------------------------------------------------------


def test_an_admin_provider_takes_submissions_until_it_is_disabled(client, admin, stub_url):
    before = catalog_version()
    created = create(
        client,
        admin,
        api_endpoint=stub_url,
        api_key=CANARY,
        display_name="Local vLLM",
        models=[
            "stub-model",
            {
                "model_name": "llama3.1:8b",
                "input_cost_per_1k_tokens": "0.0001",
                "output_cost_per_1k_tokens": 0.0002,
            },
        ],
    )
    assert created.status_code == 201, created.text
    provider = created.json()
    assert provider["source"] == "admin" and provider["key_source"] == "admin"
    assert provider["api_key_set"] is True and provider["api_key_hint"] == "…" + CANARY[-4:]
    assert provider["usable"] is True and provider["unusable_reason"] is None
    assert provider["default_model"] == "stub-model"
    models = {m["model_name"]: m for m in provider["models"]}
    assert models["llama3.1:8b"]["input_cost_per_1k_tokens"] == "0.000100"
    assert models["llama3.1:8b"]["output_cost_per_1k_tokens"] == "0.000200"
    assert models["stub-model"]["input_cost_per_1k_tokens"] is None  # nothing shipped for it
    assert all(m["offered"] and m["source"] == "admin" for m in models.values())
    assert catalog_version() == before + 1

    user = register_and_login(client)
    listed = {p["name"]: p for p in client.get("/providers", headers=user).json()}
    assert listed["vllm"]["display_name"] == "Local vLLM"
    assert listed["vllm"]["models"] == ["stub-model", "llama3.1:8b"]
    chat = client.post("/chats", json={"provider": "vllm"}, headers=user)
    assert chat.status_code == 201, chat.text
    chat_id = chat.json()["id"]
    accepted = submit(client, user, chat_id)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    assert (accepted.json()["provider"], accepted.json()["model"]) == ("vllm", "stub-model")

    disabled = client.patch("/admin/providers/vllm", json={"is_enabled": False}, headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["usable"] is False
    assert disabled.json()["unusable_reason"] == "disabled by an admin"
    refused = submit(client, user, chat_id, "again")
    assert refused.status_code == 422
    assert "Provider 'vllm' is disabled" in refused.json()["detail"]

    client.patch("/admin/providers/vllm", json={"is_enabled": True}, headers=admin)
    assert submit(client, user, chat_id, "once more").status_code == 202


def test_an_endpoint_change_is_where_the_next_probe_goes(client, admin, stub_url):
    created = create(client, admin, api_endpoint="http://127.0.0.1:9/v1", api_key=CANARY)
    assert created.status_code == 201, created.text
    unreachable = client.post("/admin/providers/vllm/test", headers=admin).json()
    assert unreachable["ok"] is False and unreachable["error"]["kind"] == "unavailable"
    cleared = client.patch("/admin/providers/vllm", json={"api_endpoint": None}, headers=admin)
    assert cleared.status_code == 422 and "needs an api_endpoint" in cleared.text

    patched = client.patch("/admin/providers/vllm", json={"api_endpoint": stub_url}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert patched.json()["api_endpoint"] == stub_url
    probed = client.post("/admin/providers/vllm/test", headers=admin).json()
    assert probed["ok"] is True, probed


def test_a_password_in_the_endpoint_is_not_shown_back(client, admin):
    created = create(client, admin, api_endpoint="http://probe:hunter2@127.0.0.1:9/v1")
    assert created.status_code == 201, created.text
    assert created.json()["api_endpoint"] == "http://probe:***@127.0.0.1:9/v1"
    listed = client.get("/admin/providers", headers=admin)
    assert "hunter2" not in created.text and "hunter2" not in listed.text


def test_a_provider_with_a_queued_reply_is_deleted_only_once_disabled(client, admin):
    assert create(client, admin, models=["m1"]).status_code == 201
    user = register_and_login(client)
    chat_id = client.post("/chats", json={"provider": "vllm"}, headers=user).json()["id"]
    assert submit(client, user, chat_id).status_code == 202

    refused = client.delete("/admin/providers/vllm", headers=admin)
    assert refused.status_code == 409
    assert "queued or running replies: disable it first" in refused.json()["detail"]
    client.patch("/admin/providers/vllm", json={"is_enabled": False}, headers=admin)
    assert client.delete("/admin/providers/vllm", headers=admin).status_code == 204
    assert client.get("/admin/providers/vllm", headers=admin).status_code == 404
    assert "vllm" not in {p["name"] for p in client.get("/providers", headers=user).json()}
    assert client.delete("/admin/providers/vllm", headers=admin).status_code == 404


def test_environment_providers_keep_what_the_settings_own(client, admin):
    openai = client.get("/admin/providers/openai", headers=admin).json()
    assert openai["source"] == "environment" and openai["key_source"] == "environment"
    assert openai["key_setting"] == "OPENAI_API_KEY"
    assert openai["api_key_set"] is True and openai["api_key_hint"] == "…-key"
    listed = client.get("/admin/providers", headers=admin).json()
    assert {"echo", "openai", "anthropic", "ollama"} <= {p["provider_name"] for p in listed["data"]}

    for change, setting in [
        ({"api_endpoint": "http://127.0.0.1:9/v1"}, "OPENAI_API_BASE"),
        ({"api_key": "sk-other"}, "OPENAI_API_KEY"),
        ({"default_model": "gpt-4"}, "DEFAULT_OPENAI_MODEL"),
        ({"adapter": "openai_compatible"}, "admin provider under another name"),
        ({"config_json": {"include_usage": False}}, "options come from the settings"),
    ]:
        refused = client.patch("/admin/providers/openai", json=change, headers=admin)
        assert refused.status_code == 422, (change, refused.text)
        assert setting in refused.json()["detail"]
    refused = client.delete("/admin/providers/openai", headers=admin)
    assert refused.status_code == 409 and "remove it from the settings" in refused.json()["detail"]

    changed = client.patch(
        "/admin/providers/openai",
        json={"display_name": "OpenAI (team)", "max_tokens": 512, "is_enabled": False},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "OpenAI (team)"
    user = register_and_login(client)
    assert client.post("/chats", json={"provider": "openai"}, headers=user).status_code == 422


def test_create_refuses_bad_names_adapters_and_defaults(client, admin):
    unknown = create(client, admin, adapter="bedrock")
    assert unknown.status_code == 422
    assert "Unknown adapter 'bedrock'" in unknown.json()["detail"]
    assert "openai_compatible" in unknown.json()["detail"] and "ollama" in unknown.json()["detail"]
    for name in ("Vllm", "1vllm", "v" * 51, "has space", ""):
        assert create(client, admin, provider_name=name).status_code == 422, name
    assert create(client, admin, provider_name="openai").status_code == 409
    bad_default = create(client, admin, models=["a"], default_model="b")
    assert bad_default.status_code == 422 and "Enabled models: a" in bad_default.json()["detail"]
    assert create(client, admin, models=["a", "a"]).status_code == 422
    assert create(client, admin, api_key="two words").status_code == 422
    assert create(client, admin, max_tokens=True).status_code == 422
    assert create(client, admin, unknown_field=1).status_code == 422
    # Without an endpoint the OpenAI SDK would send the key to api.openai.com.
    no_endpoint = create(client, admin, api_endpoint=None)
    assert no_endpoint.status_code == 422 and "needs an api_endpoint" in no_endpoint.text

    assert create(client, admin, adapter="echo", models=["e1"]).status_code == 201
    assert create(client, admin, adapter="echo").status_code == 409
    patched = client.patch("/admin/providers/vllm", json={"default_model": "zz"}, headers=admin)
    assert patched.status_code == 422
    assert (
        client.patch(
            "/admin/providers/vllm", json={"provider_name": "x"}, headers=admin
        ).status_code
        == 422
    )
    assert client.patch("/admin/providers/nope", json={}, headers=admin).status_code == 404


@pytest.fixture
def no_keys_secret(keys_secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVIDER_KEYS_SECRET")
    get_settings.cache_clear()


def test_a_key_is_not_stored_without_the_secret(no_keys_secret, client, admin):
    refused = create(client, admin, api_key=CANARY)
    assert refused.status_code == 422
    assert "PROVIDER_KEYS_SECRET is not set" in refused.json()["detail"]
    assert CANARY not in refused.text
    assert create(client, admin).status_code == 201  # a keyless server needs no secret
    refused = client.patch("/admin/providers/vllm", json={"api_key": CANARY}, headers=admin)
    assert refused.status_code == 422


# -- models -----------------------------------------------------------------------------


def test_models_with_colons_and_slashes_are_added_repriced_and_removed(client, admin):
    assert create(client, admin, models=["first"]).status_code == 201
    for name in ("llama3.1:8b", "meta-llama/Llama-3-8B"):
        added = client.post(
            "/admin/providers/vllm/models",
            json={
                "model_name": name,
                "input_cost_per_1k_tokens": "0.001",
                "output_cost_per_1k_tokens": "0.002",
                "max_context_length": 8192,
            },
            headers=admin,
        )
        assert added.status_code == 201, added.text
        assert added.json()["offered"] is True
    again = client.post(
        "/admin/providers/vllm/models", json={"model_name": "llama3.1:8b"}, headers=admin
    )
    assert again.status_code == 409
    listed = client.get("/admin/providers/vllm/models", headers=admin).json()
    assert [m["model_name"] for m in listed] == ["first", "llama3.1:8b", "meta-llama/Llama-3-8B"]

    path = "/admin/providers/vllm/models/meta-llama/Llama-3-8B"
    repriced = client.patch(
        path,
        json={"input_cost_per_1k_tokens": "0.5", "output_cost_per_1k_tokens": "1.25"},
        headers=admin,
    )
    assert repriced.status_code == 200, repriced.text
    user = register_and_login(client)
    public = {m["id"]: m for m in client.get("/providers/vllm/models", headers=user).json()}
    assert Decimal(public["meta-llama/Llama-3-8B"]["input_cost_per_1k_tokens"]) == Decimal("0.5")
    assert Decimal(public["meta-llama/Llama-3-8B"]["output_cost_per_1k_tokens"]) == Decimal("1.25")

    for bad in (
        {"input_cost_per_1k_tokens": "-1"},
        {"input_cost_per_1k_tokens": None},  # half a price
        {"input_cost_per_1k_tokens": "0.0000001"},
        {"input_cost_per_1k_tokens": True},
        {"is_enabled": None},
    ):
        assert client.patch(path, json=bad, headers=admin).status_code == 422, bad
    unpriced = client.patch(
        path,
        json={"input_cost_per_1k_tokens": None, "output_cost_per_1k_tokens": None},
        headers=admin,
    )
    assert unpriced.json()["input_cost_per_1k_tokens"] is None

    disabled = client.patch(
        "/admin/providers/vllm/models/llama3.1:8b", json={"is_enabled": False}, headers=admin
    )
    assert disabled.json()["offered"] is False
    assert "llama3.1:8b" not in client.get("/providers/vllm/models", headers=user).text

    default = "/admin/providers/vllm/models/first"
    assert client.patch(default, json={"is_enabled": False}, headers=admin).status_code == 409
    refused = client.delete(default, headers=admin)
    assert refused.status_code == 409 and "change default_model first" in refused.json()["detail"]
    client.patch(
        "/admin/providers/vllm", json={"default_model": "meta-llama/Llama-3-8B"}, headers=admin
    )
    assert client.delete(default, headers=admin).status_code == 204
    assert client.delete(default, headers=admin).status_code == 404
    assert client.delete(path, headers=admin).status_code == 409  # now the default
    assert (
        client.patch("/admin/providers/vllm/models/nope", json={}, headers=admin).status_code == 404
    )


def test_environment_models_are_disabled_or_repriced_not_deleted(client, admin):
    refused = client.delete("/admin/providers/openai/models/gpt-4", headers=admin)
    assert refused.status_code == 409 and "disable it" in refused.json()["detail"]
    repriced = client.patch(
        "/admin/providers/openai/models/gpt-4",
        json={"input_cost_per_1k_tokens": "0.01", "output_cost_per_1k_tokens": "0.02"},
        headers=admin,
    )
    assert repriced.status_code == 200 and repriced.json()["source"] == "environment"
    user = register_and_login(client)
    public = {m["id"]: m for m in client.get("/providers/openai/models", headers=user).json()}
    assert Decimal(public["gpt-4"]["input_cost_per_1k_tokens"]) == Decimal("0.01")

    # A model added to an environment provider is the admin's, priced from the shipped list.
    added = client.post(
        "/admin/providers/openai/models", json={"model_name": "gpt-4o"}, headers=admin
    )
    assert added.status_code == 201, added.text
    assert added.json()["source"] == "admin"
    assert Decimal(added.json()["input_cost_per_1k_tokens"]) == Decimal("0.0025")
    chat = client.post("/chats", json={"provider": "openai", "model": "gpt-4o"}, headers=user)
    assert chat.status_code == 201, chat.text

    client.patch("/admin/providers/openai/models/gpt-4", json={"is_enabled": False}, headers=admin)
    offered = [m["id"] for m in client.get("/providers/openai/models", headers=user).json()]
    assert "gpt-4" not in offered and "gpt-4o" in offered
    assert client.delete("/admin/providers/openai/models/gpt-4o", headers=admin).status_code == 204


# -- probes -----------------------------------------------------------------------------


def test_the_probe_reports_latency_or_why_the_provider_failed(client, admin, stub_url):
    create(client, admin, api_endpoint=stub_url, api_key=CANARY)
    probed = client.post("/admin/providers/vllm/test", headers=admin)
    assert probed.status_code == 200
    assert probed.json()["ok"] is True and probed.json()["error"] is None
    assert probed.json()["models_listed"] == len(STUB_MODELS)
    assert probed.json()["latency_ms"] > 0

    create(client, admin, provider_name="wrong", api_endpoint=stub_url, api_key=WRONG_KEY)
    rejected = client.post("/admin/providers/wrong/test", headers=admin)
    assert rejected.status_code == 200
    assert rejected.json()["ok"] is False
    assert rejected.json()["error"]["kind"] == "authentication"
    assert (
        WRONG_KEY not in rejected.text and WRONG_KEY[-4:] not in rejected.json()["error"]["message"]
    )
    assert client.post("/admin/providers/nope/test", headers=admin).status_code == 404


def test_discover_lists_the_providers_models_marking_those_added(client, admin, stub_url):
    create(client, admin, api_endpoint=stub_url, api_key=CANARY, models=["stub-model", "mine"])
    found = client.get("/admin/providers/vllm/discover", headers=admin)
    assert found.status_code == 200, found.text
    added = {m["id"]: m["added"] for m in found.json()["data"]}
    assert added == {m: m == "stub-model" for m in STUB_MODELS}
    assert found.json()["data"][0]["details"] == {"owned_by": "stub"}

    create(client, admin, provider_name="down", api_endpoint="http://127.0.0.1:9/v1")
    down = client.get("/admin/providers/down/discover", headers=admin)
    assert down.status_code == 502 and "unavailable" in down.json()["detail"]


# -- keys -------------------------------------------------------------------------------


def test_a_key_is_in_no_answer_no_log_and_not_in_clear_in_the_database(
    client, admin, stub_url, keys_secret, caplog
):
    caplog.set_level(logging.DEBUG)
    bodies = [create(client, admin, api_endpoint=stub_url, api_key=CANARY, models=["m:1"]).text]
    bodies.append(
        client.post("/admin/providers/vllm/models", json={"model_name": "a/b"}, headers=admin).text
    )
    bodies.append(
        client.patch("/admin/providers/vllm", json={"max_tokens": 100}, headers=admin).text
    )
    bodies.append(client.patch("/admin/providers/vllm/models/a/b", json={}, headers=admin).text)
    # Every admin read, and the probes, with the canary provider's name.
    for method, template, _ in admin_routes():
        if method == "GET" or template.endswith("/test"):
            path = template.replace("{name}", "vllm").replace("{user_id}", "x")
            if "{" in path:  # a route of another resource (an experiment's results)
                continue
            answer = client.request(method, path, headers=admin)
            assert answer.status_code == 200, (path, answer.text)
            bodies.append(answer.text)
    bodies.append(client.patch("/admin/providers/vllm", json={"api_key": None}, headers=admin).text)
    assert all(CANARY not in body for body in bodies)
    assert '"api_key_set":false' in bodies[-1]
    assert caplog.records and CANARY not in caplog.text

    client.patch("/admin/providers/vllm", json={"api_key": CANARY}, headers=admin)
    with session_scope() as session:
        token = session.scalar(
            select(ProviderConfigRow.api_key_encrypted).where(
                ProviderConfigRow.provider_name == "vllm"
            )
        )
    assert token and CANARY not in token
    assert Fernet(keys_secret.encode()).decrypt(token.encode()).decode() == CANARY


# -- endpoint safety (SSRF) ---------------------------------------------------------------

REFUSED_ENDPOINTS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1/v1",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::ffff:169.254.169.254]/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://rebound.example.test/v1",  # resolves to 169.254.169.254 (below)
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to the metadata address, through the checker's resolver hook."""

    def resolve(host: str, port: int) -> list[Any]:
        if host == "rebound.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        raise socket.gaierror(socket.EAI_NONAME, "unknown")

    monkeypatch.setattr(endpoints, "resolve", resolve)


@pytest.mark.parametrize("url", REFUSED_ENDPOINTS)
def test_unsafe_endpoints_are_refused_on_create_and_on_patch(client, admin, fake_dns, url):
    refused = create(client, admin, api_endpoint=url)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("api_endpoint refused: ")
    assert client.get("/admin/providers/vllm", headers=admin).status_code == 404

    assert create(client, admin, api_endpoint="http://127.0.0.1:9/v1").status_code == 201
    refused = client.patch("/admin/providers/vllm", json={"api_endpoint": url}, headers=admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("api_endpoint refused: ")
    kept = client.get("/admin/providers/vllm", headers=admin).json()["api_endpoint"]
    assert kept == "http://127.0.0.1:9/v1"


def test_a_name_resolving_to_metadata_says_so(client, admin, fake_dns):
    refused = create(client, admin, api_endpoint="http://rebound.example.test/v1")
    assert "resolves to" in refused.json()["detail"]


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_ENDPOINTS_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://10.1.2.3/v1",
        "http://localhost:11434",
        "http://2130706433/",
    ],
)
def test_private_endpoints_are_refused_when_the_setting_says_so(
    private_refused, client, admin, url
):
    refused = create(client, admin, api_endpoint=url)
    assert refused.status_code == 422, refused.text
    assert "PROVIDER_ENDPOINTS_ALLOW_PRIVATE" in refused.json()["detail"]


def test_private_endpoints_are_allowed_by_default_and_stored_normalised(client, admin):
    created = create(client, admin, api_endpoint="http://2130706433:8000/v1")
    assert created.status_code == 201, created.text
    assert created.json()["api_endpoint"] == "http://127.0.0.1:8000/v1"
