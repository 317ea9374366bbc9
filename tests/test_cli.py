"""The `switchboard` operator command: migrate and create-admin on a temporary SQLite file."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared import cli
from shared.security import hash_password, verify_password
from shared.settings import get_settings
from tests.test_migrations import HEAD

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-admin-pw!"


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL points at a fresh SQLite file; the cwd is elsewhere (not the repo)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv(cli.ADMIN_PASSWORD_ENV, raising=False)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def migrated(sqlite_url: str) -> str:
    assert cli.main(["migrate"]) == 0
    return sqlite_url


@pytest.fixture
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(prompt: str = "") -> str:
        raise AssertionError(f"unexpected password prompt: {prompt}")

    monkeypatch.setattr(cli.getpass, "getpass", refuse)


def query(url: str, sql: str, **params: object) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def user(url: str, email: str) -> sa.Row | None:
    found = query(
        url,
        "SELECT email, is_admin, is_active, password_hash FROM users WHERE email = :email",
        email=email,
    )
    return found[0] if found else None


def test_migrate_from_any_directory(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert Path.cwd() != REPO_ROOT
    assert cli.main(["migrate"]) == 0
    assert query(sqlite_url, "SELECT version_num FROM alembic_version")[0][0] == HEAD
    out, err = capsys.readouterr()
    assert f"Database {sqlite_url} upgraded to head." in out
    assert "Running upgrade 0001_baseline -> 0002_multi_provider" in err
    # Idempotent: a second run has nothing to do.
    assert cli.main(["migrate"]) == 0
    tables = {
        r[0] for r in query(sqlite_url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"users", "chats", "messages", "provider_configs", "api_keys"} <= tables


def test_migrate_to_a_given_revision(sqlite_url: str) -> None:
    assert cli.main(["migrate", "0001_baseline"]) == 0
    assert query(sqlite_url, "SELECT version_num FROM alembic_version")[0][0] == "0001_baseline"


def test_console_entry_point_in_a_fresh_process(tmp_path: Path) -> None:
    """As an operator runs it: a new process, cwd outside the repo, DATABASE_URL in the env."""
    url = f"sqlite:///{tmp_path / 'proc.db'}"
    env = {**os.environ, "DATABASE_URL": url, cli.ADMIN_PASSWORD_ENV: PASSWORD}
    for args in (["migrate"], ["create-admin", "--email", "ops@example.com"]):
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    row = user(url, "ops@example.com")
    assert row is not None and row.is_admin
    assert verify_password(PASSWORD, row.password_hash)


def test_create_admin_with_password_flag(
    migrated: str, no_prompt: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["create-admin", "--email", " Root@Example.COM ", "--password", PASSWORD]) == 0
    row = user(migrated, "root@example.com")  # normalised as registrations are
    assert row is not None
    assert (bool(row.is_admin), bool(row.is_active)) == (True, True)
    assert verify_password(PASSWORD, row.password_hash)
    out, err = capsys.readouterr()
    assert "Created admin user: root@example.com" in out
    for secret in (PASSWORD, row.password_hash):
        assert secret not in out + err


def test_create_admin_password_from_environment(
    migrated: str, no_prompt: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.ADMIN_PASSWORD_ENV, PASSWORD)
    assert cli.main(["create-admin", "--email", "env@example.com"]) == 0
    row = user(migrated, "env@example.com")
    assert row is not None and row.is_admin
    assert verify_password(PASSWORD, row.password_hash)


def test_create_admin_prompts_when_no_password_is_given(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(cli.getpass, "getpass", fake_getpass)
    monkeypatch.setattr(cli, "_can_prompt", lambda: True)
    assert cli.main(["create-admin", "--email", "typed@example.com"]) == 0
    assert len(prompts) == 2  # asked twice, to confirm
    row = user(migrated, "typed@example.com")
    assert row is not None and verify_password(PASSWORD, row.password_hash)
    assert PASSWORD not in "".join(capsys.readouterr())


def test_create_admin_rejects_mismatched_or_short_passwords(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(cli, "_can_prompt", lambda: True)
    assert cli.main(["create-admin", "--email", "typo@example.com"]) == 1
    assert "do not match" in capsys.readouterr().err

    assert cli.main(["create-admin", "--email", "short@example.com", "--password", "1234567"]) == 1
    err = capsys.readouterr().err
    assert "at least 8 characters" in err and "1234567" not in err

    assert cli.main(["create-admin", "--email", "not-an-email", "--password", PASSWORD]) == 1
    assert "invalid email" in capsys.readouterr().err
    assert query(migrated, "SELECT count(*) FROM users")[0][0] == 0


def test_create_admin_promotes_an_existing_user_and_keeps_the_password(
    migrated: str, no_prompt: None, capsys: pytest.CaptureFixture[str]
) -> None:
    old_hash = hash_password("users-own-password")
    engine = sa.create_engine(migrated)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, password_hash) VALUES (:id, :email, :h)"
            ).bindparams(sa.bindparam("id", type_=sa.Uuid())),
            {"id": uuid.uuid4(), "email": "member@example.com", "h": old_hash},
        )
    engine.dispose()

    assert cli.main(["create-admin", "--email", "member@example.com"]) == 0
    row = user(migrated, "member@example.com")
    assert row is not None and row.is_admin
    assert row.password_hash == old_hash
    assert "Promoted existing user to admin: member@example.com" in capsys.readouterr().out

    # With a password given, promoting also resets it.
    assert cli.main(["create-admin", "--email", "member@example.com", "--password", PASSWORD]) == 0
    row = user(migrated, "member@example.com")
    assert row is not None and verify_password(PASSWORD, row.password_hash)
    assert query(migrated, "SELECT count(*) FROM users")[0][0] == 1


def test_create_admin_without_a_terminal_does_not_prompt(
    migrated: str,
    no_prompt: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "_can_prompt", lambda: False)
    assert cli.main(["create-admin", "--email", "cron@example.com"]) == 1
    assert cli.ADMIN_PASSWORD_ENV in capsys.readouterr().err
    assert user(migrated, "cron@example.com") is None


def test_create_admin_before_migrating_says_so(
    sqlite_url: str, no_prompt: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["create-admin", "--email", "early@example.com", "--password", PASSWORD]) == 1
    assert "switchboard migrate" in capsys.readouterr().err


def test_commands_registry_is_the_extension_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dev` and `worker` are added by registering a Command; no parser changes needed."""
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--queues", default="ollama")

    monkeypatch.setitem(cli.COMMANDS, "worker", cli.Command("run a worker", run, arguments))
    assert cli.main(["worker", "--queues", "openai"]) == 7
    assert seen[0].queues == "openai"

    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for name in ("migrate", "create-admin", "worker"):
        assert name in help_text
