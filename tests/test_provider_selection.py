"""Which providers a deployment offers: the default must be usable, and PROVIDERS_ENABLED
decides the same thing for the API, /providers and the worker queues."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.chats.selection import InvalidSelection, resolve_selection
from shared.providers.catalog import provider_configs
from shared.settings import CompatibleProviderSettings, InvalidSettings, Settings, get_settings
from tests.helpers import register_and_login
from workers.celery_app import queue_names

REPO = Path(__file__).resolve().parents[1]


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "OPENAI_API_KEY": None,
        "ANTHROPIC_API_KEY": None,
        "OPENAI_COMPATIBLE_PROVIDERS": [],
        "MULTI_PROVIDER_ENABLED": True,
        "DEFAULT_PROVIDER": "echo",
        "ECHO_ENABLED": True,
        "PROVIDERS_ENABLED": [],
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set variables, then `get_settings()` builds this process's settings from them."""
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_COMPATIBLE_PROVIDERS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


# -- the default provider (MULTI_PROVIDER_ENABLED=false included) ------------------------


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"DEFAULT_PROVIDER": "anthropic"}, "which has no API key: set ANTHROPIC_API_KEY"),
        (
            {"DEFAULT_PROVIDER": "anthropic", "MULTI_PROVIDER_ENABLED": "false"},
            "which has no API key: set ANTHROPIC_API_KEY",
        ),
        (
            {"DEFAULT_PROVIDER": "echo", "ECHO_ENABLED": "false", "MULTI_PROVIDER_ENABLED": "0"},
            "DEFAULT_PROVIDER is 'echo', but ECHO_ENABLED is false",
        ),
        (
            {"DEFAULT_PROVIDER": "ollama", "PROVIDERS_ENABLED": "echo"},
            "whose adapter 'ollama' is not in PROVIDERS_ENABLED",
        ),
        (
            {
                "DEFAULT_PROVIDER": "lab",
                "OPENAI_COMPATIBLE_PROVIDERS": '[{"name": "lab", "base_url": "http://l/v1", '
                '"models": ["m"], "enabled": false}]',
            },
            "which is disabled (enabled: false in OPENAI_COMPATIBLE_PROVIDERS)",
        ),
        ({"DEFAULT_PROVIDER": "sk-pasted-here"}, "does not name a configured provider"),
    ],
)
def test_start_up_refuses_a_default_provider_that_cannot_answer(environment, variables, reason):
    for name, value in variables.items():
        environment.setenv(name, value)
    with pytest.raises(InvalidSettings) as raised:
        get_settings()
    assert reason in str(raised.value)
    assert "sk-pasted-here" not in str(raised.value)


def test_start_up_accepts_a_usable_default_provider(environment):
    environment.setenv("DEFAULT_PROVIDER", "anthropic")
    environment.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    environment.setenv("MULTI_PROVIDER_ENABLED", "false")
    assert get_settings().DEFAULT_PROVIDER == "anthropic"


def test_the_api_and_switchboard_migrate_refuse_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")} | {
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "DEFAULT_PROVIDER": "echo",
        "ECHO_ENABLED": "false",
        "MULTI_PROVIDER_ENABLED": "false",
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "shared.cli", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 1
    assert "ECHO_ENABLED is false" in migrate.stderr
    api = subprocess.run(
        [sys.executable, "-c", "import api.main"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert api.returncode != 0 and "ECHO_ENABLED is false" in api.stderr


def test_with_the_flag_off_a_disabled_default_is_refused_not_used():
    no_key = _settings(DEFAULT_PROVIDER="anthropic", MULTI_PROVIDER_ENABLED=False)
    with pytest.raises(InvalidSelection, match="'anthropic' is disabled"):
        resolve_selection(no_key, provider=None, model=None)
    no_echo = _settings(DEFAULT_PROVIDER="echo", ECHO_ENABLED=False, MULTI_PROVIDER_ENABLED=False)
    with pytest.raises(InvalidSelection, match="Unknown provider 'echo'"):
        resolve_selection(no_echo, provider="echo", model=None)


def test_with_the_flag_off_every_request_goes_to_the_default():
    settings = _settings(DEFAULT_PROVIDER="echo", MULTI_PROVIDER_ENABLED=False, ECHO_MODELS="a,b")
    chosen = resolve_selection(settings, provider="ollama", model="b")
    assert (chosen.provider, chosen.model) == ("echo", "b")
    fallback = resolve_selection(settings, provider=None, model="not-offered")
    assert (fallback.provider, fallback.model) == ("echo", "a")


# -- PROVIDERS_ENABLED -------------------------------------------------------------------


def test_providers_enabled_limits_the_catalog_and_the_worker_queues():
    groq = CompatibleProviderSettings(name="groq", base_url="http://g/v1", models=["m"])
    everything = _settings(OPENAI_COMPATIBLE_PROVIDERS=[groq], OPENAI_API_KEY="sk-x")
    assert set(provider_configs(everything)) == {"echo", "ollama", "anthropic", "openai", "groq"}

    some = everything.model_copy(update={"PROVIDERS_ENABLED": ["echo", "openai"]})
    assert set(provider_configs(some)) == {"echo", "openai"}
    assert set(queue_names(some)) == {"echo", "openai"}

    compatible = everything.model_copy(update={"PROVIDERS_ENABLED": ["echo", "openai_compatible"]})
    assert set(queue_names(compatible)) == {"echo", "groq"}


@pytest.fixture
def only_echo_and_openai(client) -> Iterator[None]:
    from api.main import app

    settings = get_settings().model_copy(update={"PROVIDERS_ENABLED": ["echo", "openai"]})
    app.dependency_overrides[get_settings] = lambda: settings
    yield
    app.dependency_overrides.pop(get_settings, None)


def test_the_api_offers_only_the_providers_workers_load(client, only_echo_and_openai):
    headers = register_and_login(client)
    listed = {p["name"] for p in client.get("/providers", headers=headers).json()}
    assert listed == {"echo", "openai"}
    assert client.get("/providers/anthropic/models", headers=headers).status_code == 404

    refused = client.post("/chats", json={"provider": "anthropic"}, headers=headers)
    assert refused.status_code == 422
    assert "Unknown provider 'anthropic'" in refused.json()["detail"]
    chat = client.post("/chats", json={"title": "t"}, headers=headers).json()
    sent = client.post(
        f"/chats/{chat['id']}/messages",
        json={"message": "hi", "provider": "ollama"},
        headers=headers,
    )
    assert sent.status_code == 422
    accepted = client.post("/chats", json={"provider": "openai"}, headers=headers)
    assert accepted.status_code == 201
