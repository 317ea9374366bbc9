"""Shared fixtures. API and pipeline tests run against real PostgreSQL and Redis.

`TEST_DATABASE_URL` names the PostgreSQL server/database to use (it is dropped and recreated);
`TEST_REDIS_URL` the Redis database (flushed between tests). Where nothing answers at either,
throwaway servers are started for the session (tests/servers.py) and named in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import ensure_test_servers, stop_all

# Where nothing answers (a fresh machine without these services), throwaway servers stand in.
_servers = ensure_test_servers(
    os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_test"
    ),
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
)
TEST_DATABASE_URL = _servers.database_url
TEST_REDIS_URL = _servers.redis_url

# Settings are read from the environment: pin them before any app module is imported.
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "DEFAULT_PROVIDER": "echo",
        "ECHO_MODELS": "echo-1,echo-2",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_MODELS": "gpt-4,gpt-3.5-turbo,stub-model",
        "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
        "ANTHROPIC_MODELS": "claude-3-sonnet-20240229,stub-model",
    }
)
# Anything started from here (a nested pytest, a CLI test) targets the same servers.
os.environ["TEST_DATABASE_URL"] = TEST_DATABASE_URL
os.environ["TEST_REDIS_URL"] = TEST_REDIS_URL
for _name in (
    "OPENAI_API_BASE",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_API_URL",
    "MULTI_PROVIDER_ENABLED",
    "OPENAI_COMPATIBLE_PROVIDERS",
):
    os.environ.pop(_name, None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _servers.started:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_all()


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head with Alembic, once per test session."""
    from tests.helpers import recreate_migrated_database

    recreate_migrated_database(TEST_DATABASE_URL)
    yield TEST_DATABASE_URL


@pytest.fixture
def db_clean(database: str) -> Iterator[None]:
    """Each test starts with empty tables (API and worker processes commit for real)."""
    from sqlalchemy import text

    from shared.db import get_engine
    from shared.models import Base

    yield
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def redis_clean() -> Iterator[None]:
    """Drops the token channel's keys; the Celery broker's keys stay (a worker may be running)."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)

    def clean() -> None:
        keys = list(client.scan_iter("sb:*", count=1000))
        if keys:
            client.delete(*keys)

    clean()
    yield
    clean()
    client.close()


@pytest.fixture
def client(db_clean: None, redis_clean: None) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from api.main import app

    with TestClient(app) as test_client:
        yield test_client
