"""Test runs keep to their own databases and processes: every pytest-xdist worker gets a
PostgreSQL database and a Redis db of its own, and no API or Celery worker outlives its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import MAX_WORKERS, TEST_REDIS_URL, worker_urls

REPO = Path(__file__).resolve().parents[1]
DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_test"


def _redis_db(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


def test_each_worker_gets_its_own_postgres_database_and_redis_db():
    urls = [worker_urls(DATABASE, "redis://127.0.0.1:6379/15", f"gw{k}") for k in range(15)]

    names = [database.rsplit("/", 1)[1] for database, _ in urls]
    assert names[:3] == ["switchboard_test_gw0", "switchboard_test_gw1", "switchboard_test_gw2"]
    assert len(set(names)) == MAX_WORKERS
    dbs = [_redis_db(redis_url) for _, redis_url in urls]
    assert dbs[:4] == [15, 1, 2, 3]
    assert sorted(dbs) == list(range(1, 16))  # all distinct, db 0 never taken
    assert all(redis_url.startswith("redis://127.0.0.1:6379/") for _, redis_url in urls)


def test_redis_dbs_wrap_after_15_from_any_base():
    dbs = [_redis_db(worker_urls(DATABASE, "redis://h:1/13", f"gw{k}")[1]) for k in range(15)]
    assert dbs[:5] == [13, 14, 15, 1, 2]
    assert sorted(dbs) == list(range(1, 16))


def test_more_workers_than_redis_dbs_are_refused_before_any_starts():
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", str(MAX_WORKERS + 1), "--co", "-q", __file__],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr  # usage error
    assert f"use -n {MAX_WORKERS} or fewer" in result.stderr


def test_a_second_run_on_the_same_databases_is_refused_while_this_one_runs():
    # As when two people start ./scripts/test with the default URLs at once: rather than
    # truncating each other's tables and taking each other's jobs, the second one stops.
    inherited = ("COV_", "PYTEST_XDIST_", "SWITCHBOARD_TEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", __file__, "-k", "none"],
        cwd=REPO,
        env=env,  # this process's TEST_DATABASE_URL and TEST_REDIS_URL, claimed by this run
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr  # usage error
    database = os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[1]
    redis_db = urlsplit(os.environ["TEST_REDIS_URL"])
    assert f"another test run is using PostgreSQL database {database}" in result.stderr
    assert f"Redis db {redis_db.hostname}:{redis_db.port or 6379}{redis_db.path}" in result.stderr


def _notices(listener: object, seconds: float) -> list[bytes]:
    """The messages published to the listener's channel within `seconds`."""
    deadline = time.monotonic() + seconds
    received = []
    while (left := deadline - time.monotonic()) > 0:
        message = listener.get_message(timeout=left)  # type: ignore[attr-defined]
        if message is not None and message["type"] == "message":
            received.append(message["data"])
    return received


def test_provider_change_notices_stay_on_their_redis_database():
    # Pub/sub spans a Redis server's databases: unscoped, every API and worker of every other
    # database (a parallel test worker, another deployment) would wake on each notice.
    import redis

    from shared.providers.directory import ProviderDirectory, change_channel
    from shared.settings import get_settings

    client = redis.Redis.from_url(TEST_REDIS_URL)
    listener = client.pubsub()
    listener.subscribe(change_channel(client))
    try:
        settings = get_settings()
        here = _redis_db(settings.REDIS_URL)
        elsewhere = TEST_REDIS_URL.rsplit("/", 1)[0] + f"/{here % MAX_WORKERS + 1}"
        ProviderDirectory().publish_change(settings.model_copy(update={"REDIS_URL": elsewhere}))
        assert _notices(listener, seconds=1) == []
        ProviderDirectory().publish_change(settings)
        assert _notices(listener, seconds=1) == [b"1"]
    finally:
        listener.close()
        client.close()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def test_a_killed_test_process_leaves_no_service_process_behind(tmp_path: Path):
    # As a test run's process starts an API or a Celery worker, then is killed (a timeout, a
    # crashed xdist worker): what it started must not stay and consume jobs of later runs.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.e2e.harness import start_process\n"
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
        "process = start_process('sleeper', sleeper, {}, Path(sys.argv[1]))\n"
        "print(process.popen.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        env=env | {"PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert _running(child)
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    survived = _running(child)
    if survived:
        os.kill(child, signal.SIGKILL)
    assert not survived
