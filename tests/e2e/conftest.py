"""End-to-end fixtures: stub providers (threads), a uvicorn API and a Celery worker (processes).

Every part is real: PostgreSQL, Redis (broker and token channel), the gevent worker pool and
the providers' client libraries talking HTTP to the stubs.

The processes live as long as this package's tests run (package scope), not to the end of the
session: tests elsewhere expect no Celery worker to take the jobs they queue (tests/api reads
them off the `echo` queue), whichever order they run in, serially or in an xdist worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.browser import browser, open_page, page, web_user  # noqa: F401 (fixtures)
from tests.e2e.harness import Process, base_env, start_api, start_worker
from tests.stubs.anthropic_stub import AnthropicStub
from tests.stubs.ollama_stub import OllamaStub
from tests.stubs.openai_stub import OpenAIStub

STUB_MODELS = [
    "stub-model",
    "fault-429-then-ok",
    "fault-500",
    "fault-cut",
    "fault-401",
    "stub-model+tokens=40+delay=50",
    "stub-model+tokens=200+delay=20",
    "stub-model+tokens=40+delay=100",
    "stub-model+tokens=2+delay=2500",
    "fault-hang",
    "fault-stall",
    "fault-stall+after=5",
    "fault-malformed",
    # The routing tests' fallback target: a short reply that is easy to tell apart.
    "stub-model+tokens=8",
    # The browser tests' slow reply: 30 tokens 150 ms apart, time to see steps and reload.
    "stub-model+tokens=30+delay=150",
]
# The shared worker leaves the ollama queue to the tests that start (and kill) their own.
QUEUES = ["echo", "anthropic", "openai"]


@pytest.fixture(scope="package")
def stub_urls() -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        yield {
            "openai": stack.enter_context(OpenAIStub().serve_in_thread()),
            "anthropic": stack.enter_context(AnthropicStub().serve_in_thread()),
            "ollama": stack.enter_context(OllamaStub().serve_in_thread()),
        }


@pytest.fixture(scope="package")
def service_env(database: str, stub_urls: dict[str, str]) -> dict[str, str]:
    models = ",".join(STUB_MODELS)
    return base_env(
        ENVIRONMENT="test",
        DATABASE_URL=TEST_DATABASE_URL,
        REDIS_URL=TEST_REDIS_URL,
        DEFAULT_PROVIDER="echo",
        ECHO_MODELS="echo-1",
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_API_BASE=stub_urls["openai"],  # the stub's URL ends in /v1
        OPENAI_MODELS=models,
        ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
        ANTHROPIC_BASE_URL=stub_urls["anthropic"],
        ANTHROPIC_MODELS=models,
        OLLAMA_API_URL=stub_urls["ollama"],
        OLLAMA_MODELS=models,
        PROVIDER_MAX_RETRIES="2",
        PROVIDER_TIMEOUT_SECONDS="5",
        TASK_SOFT_TIME_LIMIT="8",
        TASK_TIME_LIMIT="9",
        BROKER_VISIBILITY_TIMEOUT="10",
        SSE_HEARTBEAT_SECONDS="2",
        # Short enough for the pool test to see a cooled-down target recover.
        TARGET_COOLDOWN_SECONDS="3",
        # Admin-set provider keys can be stored (the admin page's tests set one).
        PROVIDER_KEYS_SECRET=Fernet.generate_key().decode(),
    )


@pytest.fixture(scope="package")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="package")
def api_url(service_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    process, url = start_api(service_env, log_dir)
    yield url
    process.stop()


@pytest.fixture(scope="package")
def worker(service_env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    process = start_worker(service_env, log_dir, QUEUES)
    yield process
    process.stop()


@pytest.fixture
def http(
    api_url: str, worker: Process, db_clean: None, redis_clean: None
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client
