"""Settings: the plan's names and defaults, parsed lists, and refusals at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings

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


def test_production_without_a_secret_key_is_refused():
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        _settings(ENVIRONMENT="production", SECRET_KEY=None)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        _settings(ENVIRONMENT="production", SECRET_KEY="short")
    assert _settings(ENVIRONMENT="production", SECRET_KEY="k" * 40).secret_key == "k" * 40


def test_visibility_timeout_must_exceed_the_time_limits():
    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT"):
        _settings(TASK_SOFT_TIME_LIMIT=10, TASK_TIME_LIMIT=20, BROKER_VISIBILITY_TIMEOUT=15)


def test_the_api_does_not_start_in_production_without_a_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
        "ENVIRONMENT": "production",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import api.main"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
