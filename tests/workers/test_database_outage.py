"""A finished generation survives the database going away (issue 12, 2.1).

The provider has been paid for a reply once it streamed: the reply must then be stored exactly
once, with its text and one usage row, whether the worker's connections were cut (a restart or
failover terminates every backend) or PostgreSQL stayed down longer than the finish retries.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psycopg2
import pytest
import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.channel import ReplyPublisher, TokenChannel
from shared.db import make_engine, session_scope
from shared.models import Message, ProviderUsage
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.harness import REPO, base_env
from tests.helpers import add_queued_reply, recreate_migrated_database, stream_events
from tests.servers import private_postgres
from workers.generation import run_generation
from workers.outcomes import spool_key

QUESTION = "say this back"
ECHOED = f"Echo: {QUESTION}"
PROTOCOL_TIMEOUT_SECONDS = 60


def _add_queued_reply(session: Session) -> uuid.UUID:
    return add_queued_reply(session, question=QUESTION)


def _stored(session: Session, reply_id: uuid.UUID) -> tuple[Message, int]:
    reply = session.get_one(Message, reply_id)
    usage_rows = session.scalar(
        select(func.count()).select_from(ProviderUsage).where(ProviderUsage.message_id == reply_id)
    )
    return reply, usage_rows or 0


def _terminate_other_backends(database_url: str) -> int:
    """What a PostgreSQL restart or failover does to the worker: its connections are cut."""
    url = make_url(database_url)
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


class FaultAtFirstToken(TokenChannel):
    """The worker's token channel, calling `fault` once, at the reply's first token: after the
    claim, before the finish, deterministically."""

    def __init__(self, fault: Callable[[], Any]) -> None:
        super().__init__(redis.Redis.from_url(TEST_REDIS_URL), ttl_seconds=600, flush_interval=0.02)
        self.fault = fault
        self.fault_results: list[Any] = []

    def publisher(self, reply_id: object) -> ReplyPublisher:
        channel = self

        class Publisher(ReplyPublisher):
            def token(self, text: str) -> None:
                if not channel.fault_results:
                    channel.fault_results.append(channel.fault())
                super().token(text)

        return Publisher(self, reply_id)


@pytest.fixture
def reply_id(db_clean: None, redis_clean: None) -> uuid.UUID:
    with session_scope() as session:
        return _add_queued_reply(session)


def _check_stored_once(reply_id: uuid.UUID) -> None:
    with session_scope() as session:
        reply, usage_rows = _stored(session, reply_id)
        assert (reply.status, reply.content, reply.attempts) == ("completed", ECHOED, 1)
        assert usage_rows == 1
    assert stream_events(reply_id).count("done") == 1


def test_backends_terminated_between_claim_and_finish_still_store_the_reply_once(reply_id):
    channel = FaultAtFirstToken(lambda: _terminate_other_backends(TEST_DATABASE_URL))
    run_generation(reply_id, channel=channel)
    # The claim's connection went back to the pool before the first token: it was cut.
    assert channel.fault_results[0] >= 1
    _check_stored_once(reply_id)


def test_stale_pooled_connections_do_not_fail_the_claim(reply_id):
    # The fixture's session left a pooled connection; cut it as a restart would.
    assert _terminate_other_backends(TEST_DATABASE_URL) >= 1
    run_generation(reply_id)
    _check_stored_once(reply_id)


class Worker:
    """tests/workers/finish_during_outage.py in a process of its own; every read is bounded."""

    def __init__(
        self,
        reply_id: uuid.UUID,
        database_url: str,
        log_path: Path,
        *,
        finish_retry_seconds: float,
        hard_limit_after: float,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        script = Path(__file__).with_name("finish_during_outage.py")
        arguments = [str(reply_id), str(finish_retry_seconds), str(hard_limit_after)]
        self.process = subprocess.Popen(
            [sys.executable, str(script), *arguments],
            cwd=REPO,
            env=base_env(DATABASE_URL=database_url, REDIS_URL=TEST_REDIS_URL, PYTHONPATH=str(REPO)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)

    def next_event(self, expected: str) -> dict[str, Any]:
        try:
            message = json.loads(self._lines.get(timeout=PROTOCOL_TIMEOUT_SECONDS))
        except queue.Empty:
            raise AssertionError(f"no {expected!r} from the worker:\n{self.log()}") from None
        assert message["event"] == expected, (message, self.log())
        return message

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.close()


@pytest.fixture
def private_database() -> Iterator[tuple[Any, str, Engine]]:
    with private_postgres() as server:
        url = server.url("switchboard_outage")
        recreate_migrated_database(url)
        engine = make_engine(url)
        try:
            yield server, url, engine
        finally:
            engine.dispose()


@pytest.mark.parametrize(
    ("finish_retry_seconds", "hard_limit_after", "first_result"),
    [
        # The finish retries run out: the job is to be delivered again.
        (1.0, 0, "unavailable"),
        # TASK_TIME_LIMIT strikes while the finish is still retrying (it is only
        # TASK_TIME_LIMIT - TASK_SOFT_TIME_LIMIT after a reply stopped by the soft limit).
        (30.0, 1.5, "Timeout"),
    ],
    ids=["finish-retries-exhausted", "hard-time-limit-during-the-retries"],
)
def test_database_down_while_a_reply_finishes_stores_it_later_once(
    private_database, redis_clean, tmp_path, finish_retry_seconds, hard_limit_after, first_result
):
    server, url, engine = private_database
    with Session(engine) as session, session.begin():
        reply_id = _add_queued_reply(session)
    worker = Worker(
        reply_id,
        url,
        tmp_path / "worker.log",
        finish_retry_seconds=finish_retry_seconds,
        hard_limit_after=hard_limit_after,
    )
    try:
        worker.next_event("first-token")  # claimed, streaming
        server.stop()
        worker.send("go")
        first = worker.next_event("first-run")
        assert first["result"] == first_result, worker.log()
        assert first["text"] == ECHOED
        # The provider has been paid: its outcome waits in Redis while the database is away.
        spool = redis.Redis.from_url(TEST_REDIS_URL)
        try:
            assert spool.exists(spool_key(reply_id))
            server.start()
            worker.send("again")
            second = worker.next_event("second-run")
            assert second == {"event": "second-run", "result": "stored", "tokens": []}
            assert not spool.exists(spool_key(reply_id))
        finally:
            spool.close()
        assert worker.process.wait(30) == 0, worker.log()
    finally:
        worker.close()

    engine.dispose()  # its connections died with the server
    with Session(engine) as session:
        reply, usage_rows = _stored(session, reply_id)
        # Stored from the first generation; no second claim (attempts), no second provider call.
        assert (reply.status, reply.content, reply.attempts) == ("completed", ECHOED, 1)
        assert usage_rows == 1
    events = stream_events(reply_id)
    assert events.count("done") == 1 and "reset" not in events
