"""Settings: the plan's names and defaults, parsed lists, and refusals at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from shared.settings import MissingSecretKey, Settings
from tests.e2e.harness import free_port

REPO = Path(__file__).resolve().parents[1]


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_plan_defaults_and_comma_lists(monkeypatch):
    for name in ("DEFAULT_PROVIDER", "OLLAMA_MODELS", "OPENAI_MODELS", "ANTHROPIC_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_MODELS", "gpt-4o, gpt-4o-mini ,")
    settings = _settings()
    assert settings.DEFAULT_PROVIDER == "ollama"
    assert settings.DEFAULT_OLLAMA_MODEL == "llama3.1:8b-instruct-q8_0"
    assert settings.OLLAMA_MODELS == ["llama3.1:8b-instruct-q8_0"]
    assert settings.OPENAI_MODELS == ["gpt-4o", "gpt-4o-mini"]
    assert settings.MULTI_PROVIDER_ENABLED is True


def test_postgres_urls_use_psycopg2():
    assert _settings(DATABASE_URL="postgres://u@h/db").DATABASE_URL == (
        "postgresql+psycopg2://u@h/db"
    )


def test_a_short_secret_key_is_refused_in_every_environment():
    for environment in ("development", "test", "production"):
        with pytest.raises(ValidationError, match="SECRET_KEY must have at least 32"):
            _settings(ENVIRONMENT=environment, SECRET_KEY="short")
    assert _settings(ENVIRONMENT="production", SECRET_KEY="k" * 40).secret_key == "k" * 40


def test_without_a_secret_key_there_is_no_key_to_sign_with():
    for environment in ("development", "production"):
        with pytest.raises(MissingSecretKey, match="SECRET_KEY is not set"):
            _settings(ENVIRONMENT=environment, SECRET_KEY=None).secret_key  # noqa: B018


def test_tests_sign_with_a_random_key_per_process():
    script = "from shared.settings import Settings; print(Settings(_env_file=None).secret_key)"
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
        "ENVIRONMENT": "test",
        "PYTHONPATH": str(REPO),
    }
    keys = [
        subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert len(keys[0]) >= 32 and keys[0] != keys[1]


def test_visibility_timeout_must_exceed_the_time_limits():
    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT"):
        _settings(TASK_SOFT_TIME_LIMIT=10, TASK_TIME_LIMIT=20, BROKER_VISIBILITY_TIMEOUT=15)


def _without_secret_key(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY" and not k.startswith("COV_")}
    return env | {"ENVIRONMENT": "development", "PYTHONPATH": str(REPO)} | overrides


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_api_does_not_start_without_a_secret_key(tmp_path, environment):
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)],
        cwd=tmp_path,
        env=_without_secret_key(
            ENVIRONMENT=environment,
            DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            # Production also needs this one (tests/test_provider_keys.py); here only
            # SECRET_KEY is missing.
            PROVIDER_KEYS_SECRET=Fernet.generate_key().decode(),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Application startup failed" in result.stderr


def test_a_worker_needs_no_secret_key(tmp_path):
    # Workers never sign or check tokens: a worker host needs no copy of the key.
    result = subprocess.run(
        [sys.executable, "-c", "import workers.celery_app"],
        cwd=tmp_path,
        env=_without_secret_key(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
