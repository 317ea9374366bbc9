"""Provider keys at rest (issue 13, item 4): Fernet under PROVIDER_KEYS_SECRET, rotation with
`switchboard rotate-keys`, and no key in clear in a database dump, an error or a repr."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.db import get_engine
from shared.models.provider import ProviderConfigRow
from shared.providers.keys import (
    InvalidKeyToken,
    ProviderKeyBox,
    ProviderKeysUnavailable,
    key_hint,
)
from shared.settings import InvalidSettings, Settings, get_settings
from tests.conftest import TEST_DATABASE_URL
from tests.servers import _candidate_bin_dirs

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def canary() -> str:
    return "sk-canary-" + secrets.token_hex(16)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# ------------------------------------------------------------------------------ the key box


def test_a_key_round_trips_and_its_token_does_not_contain_it() -> None:
    key = canary()
    box = ProviderKeyBox(KEY_A)
    token = box.encrypt(key)
    assert key not in token and key.removeprefix("sk-canary-") not in token
    assert box.decrypt(token) == key
    # Fernet tokens carry a random IV: the same key twice gives two tokens.
    assert box.encrypt(key) != token
    for shown in (repr(box), str(box)):
        assert KEY_A not in shown and key not in shown


def test_the_hint_is_the_last_four_characters_only() -> None:
    assert key_hint("sk-live-0123456789abcd") == "…abcd"
    # A key so short that four characters would be most of it shows nothing.
    assert key_hint("abcdefg") == "…"


def test_older_keys_decrypt_and_rotate_moves_a_token_to_the_newest() -> None:
    key = canary()
    under_a = ProviderKeyBox(KEY_A).encrypt(key)
    both = ProviderKeyBox(f"{KEY_B}, {KEY_A}")  # newest first; spaces allowed
    assert both.decrypt(under_a) == key
    rotated = both.rotate(under_a)
    assert ProviderKeyBox(KEY_B).decrypt(rotated) == key
    with pytest.raises(InvalidKeyToken):
        ProviderKeyBox(KEY_A).decrypt(rotated)
    # New keys are encrypted under the first (newest) key.
    assert ProviderKeyBox(KEY_B).decrypt(both.encrypt(key)) == key


def test_an_undecryptable_token_says_why_and_nothing_else() -> None:
    key = canary()
    token = ProviderKeyBox(KEY_A).encrypt(key)
    for bad in (token, "not-a-token", token[:-4] + "AAAA"):
        with pytest.raises(InvalidKeyToken) as caught:
            ProviderKeyBox(KEY_B).decrypt(bad)
        message = str(caught.value)
        assert "invalid" in message and "rotated away" in message
        for secret in (key, token, bad, KEY_A, KEY_B):
            assert secret not in message and secret not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_without_a_secret_no_key_can_be_stored_or_read() -> None:
    box = ProviderKeyBox.from_settings(_settings(ENVIRONMENT="development"))
    assert not box.available
    with pytest.raises(ProviderKeysUnavailable, match="PROVIDER_KEYS_SECRET is not set"):
        box.encrypt(canary())
    with pytest.raises(ProviderKeysUnavailable, match="PROVIDER_KEYS_SECRET"):
        box.decrypt(ProviderKeyBox(KEY_A).encrypt(canary()))


# -------------------------------------------------------------------------------- settings


def test_the_secret_is_masked_in_the_settings() -> None:
    settings = _settings(PROVIDER_KEYS_SECRET=f"{KEY_B},{KEY_A}")
    assert KEY_A not in repr(settings) and KEY_B not in str(settings.PROVIDER_KEYS_SECRET)
    key = canary()
    assert ProviderKeyBox.from_settings(settings).decrypt(ProviderKeyBox(KEY_A).encrypt(key)) == key


def test_a_malformed_secret_is_refused_naming_the_setting_not_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    not_a_key = "hunter2-not-a-fernet-key"
    monkeypatch.setenv("PROVIDER_KEYS_SECRET", f"{KEY_A},{not_a_key}")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(caught.value)
    assert "PROVIDER_KEYS_SECRET: key 2 of 2 is not a Fernet key" in message
    assert not_a_key not in message and KEY_A not in message


def _start(env_changes: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    """`switchboard ARGS` in a new process, with the test environment plus `env_changes`."""
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_the_secret(database: str) -> None:
    production = {"ENVIRONMENT": "production", "SECRET_KEY": "s" * 40}
    refused = _start(production | {"PROVIDER_KEYS_SECRET": None}, "migrate")
    assert refused.returncode == 1, refused.stderr
    assert "PROVIDER_KEYS_SECRET is not set" in refused.stderr
    started = _start(production | {"PROVIDER_KEYS_SECRET": KEY_A}, "migrate")
    assert started.returncode == 0, started.stderr
    assert KEY_A not in started.stdout + started.stderr


@pytest.mark.parametrize(
    "process",
    [
        ["-m", "uvicorn", "api.main:app", "--port", "9"],  # refused before it binds
        ["-c", "import workers.celery_app"],
    ],
    ids=["api", "worker"],
)
def test_production_api_and_workers_refuse_to_start_without_the_secret(
    tmp_path: Path, process: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROVIDER_KEYS_SECRET"} | {
        "ENVIRONMENT": "production",
        "SECRET_KEY": "s" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [sys.executable, *process],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PROVIDER_KEYS_SECRET is not set" in result.stderr


# ----------------------------------------------------------------------------- rotate-keys


@pytest.fixture
def stored_keys(db_clean: None) -> Iterator[dict[str, str]]:
    """Two admin providers with keys encrypted under KEY_A, one without a key."""
    keys = {"vllm": canary(), "groq": canary()}
    box = ProviderKeyBox(KEY_A)
    with Session(get_engine()) as session, session.begin():
        for name, key in keys.items():
            session.add(
                ProviderConfigRow(
                    provider_name=name,
                    adapter="openai_compatible",
                    source="admin",
                    api_endpoint="http://127.0.0.1:9/v1",
                    api_key_encrypted=box.encrypt(key),
                )
            )
        session.add(ProviderConfigRow(provider_name="local", adapter="ollama", source="admin"))
    yield keys


def stored_tokens() -> dict[str, str | None]:
    with get_engine().connect() as conn:
        found = conn.execute(
            sa.text("SELECT provider_name, api_key_encrypted FROM provider_configs")
        )
        return {name: token for name, token in found}


def test_rotate_keys_re_encrypts_every_stored_key_under_the_newest(
    stored_keys: dict[str, str],
) -> None:
    before = stored_tokens()
    result = _start({"PROVIDER_KEYS_SECRET": f"{KEY_B},{KEY_A}"}, "rotate-keys")
    assert result.returncode == 0, result.stderr
    assert re.search(r"\bRotated 2 stored provider key", result.stdout), result.stdout
    output = result.stdout + result.stderr
    for secret in (*stored_keys.values(), KEY_A, KEY_B, *filter(None, before.values())):
        assert secret not in output

    after = stored_tokens()
    assert after["local"] is None
    only_b = ProviderKeyBox(KEY_B)  # the old key can now be dropped
    for name, key in stored_keys.items():
        assert after[name] != before[name]
        assert only_b.decrypt(after[name] or "") == key


def test_rotate_keys_changes_nothing_when_one_key_cannot_be_read(
    stored_keys: dict[str, str],
) -> None:
    before = stored_tokens()
    # KEY_A was dropped before rotating: no configured key opens the stored tokens.
    result = _start({"PROVIDER_KEYS_SECRET": KEY_B}, "rotate-keys")
    assert result.returncode == 1
    assert "groq, vllm" in result.stderr and "nothing was rotated" in result.stderr
    for secret in (*stored_keys.values(), KEY_A, KEY_B):
        assert secret not in result.stdout + result.stderr
    assert stored_tokens() == before


def test_rotate_keys_without_a_secret_names_the_setting(stored_keys: dict[str, str]) -> None:
    result = _start({"PROVIDER_KEYS_SECRET": None}, "rotate-keys")
    assert result.returncode == 1
    assert "PROVIDER_KEYS_SECRET is not set" in result.stderr


# -------------------------------------------------------------------------------- pg_dump


def _major(version_output: str) -> int | None:
    # "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)" -> 15
    found = re.search(r"\(PostgreSQL\) (\d+)", version_output)
    return int(found.group(1)) if found else None


def pg_dump_for(server_major: int) -> str:
    """A pg_dump at least as new as the server (an older one refuses to dump it)."""
    candidates = [path / "pg_dump" for path, _origin in _candidate_bin_dirs()]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path))
    usable: list[tuple[int, str]] = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            out = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        major = _major(out.stdout) if out.returncode == 0 else None
        if major is not None and major >= server_major:
            usable.append((major, str(candidate)))
    assert usable, f"no pg_dump for PostgreSQL {server_major} among {candidates}"
    return min(usable)[1]


def dump_test_database() -> str:
    """`pg_dump` of the test database, as an operator's backup would hold it."""
    with get_engine().connect() as conn:
        server_major = int(conn.scalar(sa.text("SHOW server_version_num")) or 0) // 10000
    url = make_url(TEST_DATABASE_URL)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    dump = subprocess.run(
        [
            pg_dump_for(server_major),
            "--host",
            url.host or "127.0.0.1",
            "--port",
            str(url.port or 5432),
            "--username",
            url.username or "postgres",
            "--no-password",
            url.database or "",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr
    return dump.stdout


def test_a_database_dump_holds_no_key_in_clear(stored_keys: dict[str, str]) -> None:
    dump = dump_test_database()
    # Not vacuous: the dump does hold the provider rows and their encrypted keys.
    tokens = stored_tokens()
    assert "vllm" in dump and tokens["vllm"] and tokens["vllm"] in dump
    for key in stored_keys.values():
        assert key not in dump
        assert key.removeprefix("sk-canary-") not in dump
    # ... while the stored column still gives each key back.
    box = ProviderKeyBox(KEY_A)
    assert {name: box.decrypt(tokens[name] or "") for name in stored_keys} == stored_keys
