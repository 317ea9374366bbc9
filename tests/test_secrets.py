"""Secrets: no known signing key, tokens that expire, and settings errors that show no values."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from shared.settings import InvalidSettings, get_settings
from tests.e2e.harness import free_port
from tests.helpers import register_and_login

REPO = Path(__file__).resolve().parents[1]
# The development default that used to be published in shared/settings.py.
PUBLISHED_KEY = "dev-only-insecure-secret-key-change-me"
PROVIDER_KEY = "sk-secret-123"


def _me(client, user_id: str, key: str, **claims: object) -> int:
    token = jwt.encode({"sub": user_id, **claims}, key, algorithm="HS256")
    return client.get("/users/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_token_forged_with_the_published_key_is_refused(client):
    headers = register_and_login(client)
    user_id = client.get("/users/me", headers=headers).json()["id"]
    exp = datetime.now(UTC) + timedelta(hours=1)
    assert _me(client, user_id, PUBLISHED_KEY, exp=exp) == 401


def test_a_token_without_exp_is_refused(client):
    headers = register_and_login(client)
    user_id = client.get("/users/me", headers=headers).json()["id"]
    key = get_settings().secret_key
    assert _me(client, user_id, key, exp=datetime.now(UTC) + timedelta(hours=1)) == 200
    assert _me(client, user_id, key) == 401
    assert _me(client, user_id, key, exp=datetime.now(UTC) - timedelta(seconds=5)) == 401
    assert _me(client, str(uuid.uuid4()), key, exp=datetime.now(UTC) + timedelta(hours=1)) == 401


# A compatible provider whose entry lacks `models`: pydantic's own message would show the whole
# entry, key included. TASK_TIME_LIMIT is wrong as well, so two settings are reported.
LEAKY_SETTINGS = {
    "OPENAI_COMPATIBLE_PROVIDERS": (
        f'[{{"name": "groq", "base_url": "http://groq.invalid/v1", "api_key": "{PROVIDER_KEY}"}}]'
    ),
    "TASK_TIME_LIMIT": "eleven",
}
# Not JSON at all: pydantic-settings fails before validation.
BROKEN_JSON = {"OPENAI_COMPATIBLE_PROVIDERS": f'[{{"name": "x", "api_key": "{PROVIDER_KEY}" bad]'}


def test_invalid_settings_name_the_settings_and_never_show_a_value(monkeypatch):
    for name, value in LEAKY_SETTINGS.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings) as raised:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(raised.value)
    assert "OPENAI_COMPATIBLE_PROVIDERS.0.models: Field required" in message
    assert "TASK_TIME_LIMIT: Input should be a valid integer" in message
    assert PROVIDER_KEY not in message and "eleven" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def _run(command: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("COV_")}
        | {"PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
        | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("bad", [LEAKY_SETTINGS, BROKEN_JSON], ids=["invalid", "not-json"])
def test_switchboard_migrate_reports_bad_settings_in_one_line_without_values(tmp_path, bad):
    result = _run([sys.executable, "-m", "shared.cli", "migrate"], tmp_path, **bad)
    assert result.returncode == 1
    assert result.stderr.startswith("switchboard migrate: error: invalid settings: ")
    assert "OPENAI_COMPATIBLE_PROVIDERS" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # no traceback
    assert PROVIDER_KEY not in result.stderr + result.stdout
    assert not (tmp_path / "x.db").exists()


def test_the_api_reports_bad_settings_without_values(tmp_path):
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(free_port())]
    result = _run(command, tmp_path, **LEAKY_SETTINGS)
    assert result.returncode != 0
    assert "InvalidSettings: invalid settings: OPENAI_COMPATIBLE_PROVIDERS.0.models" in (
        result.stderr
    )
    assert PROVIDER_KEY not in result.stderr + result.stdout
