"""Shared fixtures. API and pipeline tests run against real PostgreSQL and Redis.

`TEST_DATABASE_URL` names the PostgreSQL server/database to use (it is dropped and recreated);
`TEST_REDIS_URL` the Redis database (flushed between tests). Where nothing answers at either,
throwaway servers are started for the session (tests/servers.py) and named in the summary.

Under pytest-xdist (scripts/test runs `-n`), each worker process gwK gets databases of its own
on those servers (`worker_urls`), so no process sees another's rows, queued Celery jobs or
reply streams: an end-to-end Celery worker consumes every job queued on its Redis database.
The throwaway servers are started once, by the controlling process, whose environment the
workers inherit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.servers import DatabasesInUse, claim_databases, ensure_test_servers, stop_all

# Redis' default `databases`. Db 0, where every Redis client goes unless told otherwise (a
# developer's own stack), is never given to a test worker.
REDIS_DATABASES = 16
MAX_WORKERS = REDIS_DATABASES - 1
# Set in an xdist worker once its URLs are derived (to "<test run uid>/gw<K>").
_ISOLATED_FOR = "SWITCHBOARD_TEST_URLS_OF_WORKER"
# Set (to its pid) by the process that claimed the run's databases (pytest_sessionstart).
CLAIMED_BY = "SWITCHBOARD_TEST_DATABASES_CLAIMED_BY"


def worker_urls(database_url: str, redis_url: str, worker: str) -> tuple[str, str]:
    """The URLs xdist worker `worker` ("gw<K>") tests against, given the run's.

    PostgreSQL: the database `<name>_gw<K>` on the same server. Redis: gw0 keeps the run's db
    number, gwK takes the K-th one after it, wrapping from 15 to 1: with the default db 15,
    gw0 15, gw1 1, gw2 2, ... (so up to 9 workers leave dbs 9-14 to runs of one's own).
    """
    from sqlalchemy.engine import make_url

    index = int(worker.removeprefix("gw"))
    if index >= MAX_WORKERS:
        raise RuntimeError(
            f"xdist worker {worker}: at most {MAX_WORKERS} workers, one Redis database each"
        )
    database = make_url(database_url)
    if database.get_backend_name() == "postgresql":
        database_url = database.set(database=f"{database.database}_{worker}").render_as_string(
            hide_password=False
        )
    parts = urlsplit(redis_url)
    base = int(parts.path.strip("/") or 0)
    db = base if index == 0 else 1 + (base - 1 + index) % MAX_WORKERS
    return database_url, urlunsplit(parts._replace(path=f"/{db}"))


def _urls_for_this_process() -> tuple[str, str]:
    database_url = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_test"
    )
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return database_url, redis_url
    # A process this worker starts (a CLI test, a nested pytest) inherits PYTEST_XDIST_WORKER
    # and the TEST_* URLs already made this worker's: they must not be derived a second time.
    this_worker = f"{os.environ.get('PYTEST_XDIST_TESTRUNUID')}/{worker}"
    if os.environ.get(_ISOLATED_FOR) == this_worker:
        return database_url, redis_url
    os.environ[_ISOLATED_FOR] = this_worker
    return worker_urls(database_url, redis_url, worker)


# Where nothing answers (a fresh machine without these services), throwaway servers stand in.
# In an xdist worker they answer already: the controller started them before starting the workers.
_servers = ensure_test_servers(*_urls_for_this_process())
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


def _xdist_workers(config: pytest.Config) -> int:
    """How many worker processes this (controlling) pytest will start."""
    if getattr(config.option, "dist", "no") == "no":
        return 0
    count = 0
    for spec in config.getoption("tx", None) or []:
        times, star, _ = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


def pytest_configure(config: pytest.Config) -> None:
    workers = _xdist_workers(config)
    if workers > MAX_WORKERS:
        raise pytest.UsageError(
            f"{workers} xdist workers asked for; the tests give each one a Redis database of "
            f"its own and {MAX_WORKERS} are available (1-15): use -n {MAX_WORKERS} or fewer"
        )


_claim: object | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Claim this run's databases (every worker's, in the controller) before any test or
    worker starts; processes started from here inherit the claim (CLAIMED_BY)."""
    global _claim
    config = session.config
    if hasattr(config, "workerinput") or os.environ.get(CLAIMED_BY):
        return
    pairs = [(TEST_DATABASE_URL, TEST_REDIS_URL)]
    if workers := _xdist_workers(config):
        pairs = [worker_urls(*pairs[0], f"gw{k}") for k in range(workers)]
    try:
        _claim = claim_databases(pairs)
    except DatabasesInUse as busy:
        raise pytest.UsageError(str(busy)) from None
    os.environ[CLAIMED_BY] = str(os.getpid())


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
    from tests.helpers import empty_tables

    yield
    empty_tables()


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
