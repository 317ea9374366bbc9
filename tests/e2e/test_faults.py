"""Faults with real processes: Redis restarted without persistence, PostgreSQL connections cut,
a worker told to stop, a provider that stalls.

Each test runs its own API and workers on PRIVATE throwaway PostgreSQL and Redis servers
(tests/servers.py), never the shared ones: it may kill, restart or cut them off. Its own Ollama
stub counts the provider calls (a reply generated twice is billed twice). Every wait has a
deadline, so a broken recovery fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    Process,
    SSEEvent,
    SSEResult,
    base_env,
    read_sse_within,
    start_api,
    start_worker,
    wait_until,
)
from tests.helpers import recreate_migrated_database, register_and_login
from tests.servers import (
    PrivatePostgres,
    PrivateRedis,
    SessionServers,
    accepts_connections,
    ensure_test_servers,
    free_port,
)
from tests.stubs import reply_text
from tests.stubs._faults import last_user_text
from tests.stubs.ollama_stub import OllamaStub

DATABASE = "switchboard_faults"
ONE_SECOND_MODEL = "stub-model+tokens=10+delay=100"
FOUR_SECOND_MODEL = "stub-model+tokens=40+delay=100"
STALL_MODEL = "fault-stall"  # 3 tokens, then silence (the stub's hang_seconds)
MODELS = [ONE_SECOND_MODEL, FOUR_SECOND_MODEL, STALL_MODEL]
FINAL = ("completed", "failed", "cancelled")


@dataclass
class FaultStack:
    """API, workers, PostgreSQL, Redis and a provider stub, all private to one test."""

    postgres: PrivatePostgres
    redis: PrivateRedis
    stub: OllamaStub
    env: dict[str, str]
    log_dir: Path
    api: Process | None = None
    base_url: str = ""
    workers: list[Process] = field(default_factory=list)

    def start_worker(self, concurrency: int) -> Process:
        worker = start_worker(self.env, self.log_dir, ["echo", "ollama"], concurrency)
        self.workers.append(worker)
        return worker

    def client(self) -> tuple[httpx.Client, dict[str, str]]:
        http = httpx.Client(base_url=self.base_url, timeout=30)
        return http, register_and_login(http)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        connection: Any = self.postgres.connect(DATABASE)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def usage_rows(self, reply_id: str) -> int:
        rows = self.sql("select count(*) from provider_usage where message_id = %s", reply_id)
        return int(rows[0][0])

    def chat_requests(self) -> int:
        return len(self.stub.requests_for("/api/chat"))

    def provider_calls(self, text: str) -> int:
        """Chat requests the provider received for the user message `text`."""
        return sum(
            1
            for request in self.stub.requests_for("/api/chat")
            if last_user_text(request.json().get("messages", [])) == text
        )

    def logs(self) -> str:
        parts = [
            f"--- {process.name} ({process.log_path}):\n{process.log()[-3000:]}"
            for process in [*self.workers, *([self.api] if self.api else [])]
        ]
        return "\n".join(parts)

    def close(self) -> None:
        for process in [*self.workers, *([self.api] if self.api else [])]:
            process.stop()
        self.redis.remove()
        self.postgres.remove()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., FaultStack]]:
    """`make_stack(SETTING="value", ...)` starts a private stack with those settings."""
    with contextlib.ExitStack() as cleanup:

        def make(**settings: str) -> FaultStack:
            stub = OllamaStub(hang_seconds=60)
            stub_url = cleanup.enter_context(stub.serve_in_thread())
            postgres = PrivatePostgres().start()
            redis_server = PrivateRedis().start()
            env = base_env(
                ENVIRONMENT="test",
                DATABASE_URL=postgres.url(DATABASE),
                REDIS_URL=redis_server.url(0),
                DEFAULT_PROVIDER="echo",
                ECHO_MODELS="echo-1",
                OLLAMA_API_URL=stub_url,
                OLLAMA_MODELS=",".join(MODELS),
                PROVIDER_MAX_RETRIES="2",
                PROVIDER_TIMEOUT_SECONDS="5",
                TASK_SOFT_TIME_LIMIT="8",
                TASK_TIME_LIMIT="9",
                BROKER_VISIBILITY_TIMEOUT="10",
                SSE_HEARTBEAT_SECONDS="1",
            )
            env.update(settings)
            stack = FaultStack(postgres, redis_server, stub, env, tmp_path)
            cleanup.callback(stack.close)
            recreate_migrated_database(postgres.url(DATABASE))
            stack.api, stack.base_url = start_api(env, tmp_path)
            return stack

        yield make


def _chat(http: httpx.Client, headers: dict[str, str], provider: str, model: str) -> str:
    response = http.post("/chats", json={"provider": provider, "model": model}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _submit(http: httpx.Client, headers: dict[str, str], chat_id: str, text: str) -> dict:
    response = http.post(f"/chats/{chat_id}/messages", json={"message": text}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def _reply(http: httpx.Client, headers: dict[str, str], reply_id: str) -> dict | None:
    """The reply as its owner sees it; None while the API says it is unavailable (503)."""
    response = http.get(f"/messages/{reply_id}", headers=headers)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def _status(http: httpx.Client, headers: dict[str, str], reply_id: str) -> str | None:
    reply = _reply(http, headers, reply_id)
    return reply["status"] if reply else None


def _tokens(result: SSEResult) -> int:
    """Stub tokens streamed so far (one event may carry several: the worker batches)."""
    return result.text.count("tok")


def test_redis_restart_without_persistence_ends_every_reply(make_stack):
    """Redis loses everything (queued jobs, unacked jobs, token streams) while two replies
    stream and four wait: each still ends final, billed once, none left queued."""
    stack = make_stack(BROKER_VISIBILITY_TIMEOUT="6", TASK_SOFT_TIME_LIMIT="4", TASK_TIME_LIMIT="5")
    stack.start_worker(concurrency=2)
    http, headers = stack.client()
    chat_id = _chat(http, headers, "ollama", ONE_SECOND_MODEL)
    texts = [f"redis restart {i} {uuid.uuid4().hex[:6]}" for i in range(6)]
    reply_ids = [_submit(http, headers, chat_id, text)["reply_id"] for text in texts]

    def streaming_and_queued() -> bool:
        statuses = [_status(http, headers, reply_id) for reply_id in reply_ids]
        return "running" in statuses and "queued" in statuses and stack.chat_requests() > 0

    wait_until(streaming_and_queued, 20, stack.workers[0])
    stack.redis.stop(signal.SIGKILL)
    stack.redis.start()

    def all_final() -> bool:
        return all(_status(http, headers, reply_id) in FINAL for reply_id in reply_ids)

    try:
        wait_until(all_final, 60, stack.workers[0], interval=0.5)
    except TimeoutError:
        statuses = {reply_id: _status(http, headers, reply_id) for reply_id in reply_ids}
        pytest.fail(f"replies not final 60 s after the restart: {statuses}\n{stack.logs()}")

    for reply_id in reply_ids:
        reply = _reply(http, headers, reply_id)
        assert reply is not None
        assert reply["status"] in ("completed", "failed"), reply
        if reply["status"] == "completed":
            assert reply["content"] == reply_text(10), reply
        else:
            assert reply["error"], reply
        assert stack.usage_rows(reply_id) == 1, (reply, stack.logs())
    left = stack.sql("select id, status from messages where status in ('queued', 'running')")
    assert left == []


def test_postgres_backends_terminated_mid_stream_reply_is_stored_once(make_stack):
    """What a PostgreSQL restart or failover does to every pooled connection, mid-stream:
    the finished reply is still stored, once, with its text and one usage row."""
    stack = make_stack()
    stack.start_worker(concurrency=4)
    http, headers = stack.client()
    chat_id = _chat(http, headers, "ollama", FOUR_SECOND_MODEL)
    text = f"terminate backends {uuid.uuid4().hex[:6]}"
    accepted = _submit(http, headers, chat_id, text)
    terminated: list[int] = []

    def cut_connections(event: SSEEvent, result: SSEResult) -> None:
        if event.event == "token" and _tokens(result) >= 3 and not terminated:
            terminated.append(stack.postgres.terminate_backends(DATABASE))

    try:
        stream = read_sse_within(
            http, accepted["stream_url"], headers, 40, on_event=cut_connections
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{stack.logs()}")
    assert terminated and terminated[0] >= 1  # the API's and the worker's connections
    assert stream.last.event == "done", (stream.events[-3:], stack.logs())
    assert stream.text == reply_text(40)

    reply: dict = {}

    def stored() -> bool:
        reply.update(_reply(http, headers, accepted["reply_id"]) or {})
        return reply.get("status") in FINAL

    wait_until(stored, 20, stack.workers[0], interval=0.2)
    assert (reply["status"], reply["content"]) == ("completed", reply_text(40)), stack.logs()
    assert stack.usage_rows(accepted["reply_id"]) == 1
    assert stack.provider_calls(text) == 1  # not generated (and billed) a second time


def test_worker_sigterm_during_streams_finishes_or_hands_back_every_job(make_stack):
    """A deploy stops a worker with SIGTERM while three replies stream and two wait: the warm
    shutdown finishes its jobs or hands them back; a new worker completes the rest."""
    stack = make_stack()
    first = stack.start_worker(concurrency=3)
    http, headers = stack.client()
    chat_id = _chat(http, headers, "ollama", FOUR_SECOND_MODEL)
    texts = [f"sigterm {i} {uuid.uuid4().hex[:6]}" for i in range(5)]
    accepted = [_submit(http, headers, chat_id, text) for text in texts]
    reply_ids = [reply["reply_id"] for reply in accepted]

    def three_streaming() -> bool:
        statuses = [_status(http, headers, reply_id) for reply_id in reply_ids]
        return statuses.count("running") == 3 and stack.chat_requests() >= 3

    wait_until(three_streaming, 20, first)
    first.popen.send_signal(signal.SIGTERM)
    try:
        first.popen.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop within 30 s of SIGTERM\n{stack.logs()}")

    stack.start_worker(concurrency=3)

    def all_final() -> bool:
        return all(_status(http, headers, reply_id) in FINAL for reply_id in reply_ids)

    try:
        wait_until(all_final, 60, stack.workers[-1], interval=0.5)
    except TimeoutError:
        statuses = {reply_id: _status(http, headers, reply_id) for reply_id in reply_ids}
        pytest.fail(f"replies not final 60 s after SIGTERM: {statuses}\n{stack.logs()}")

    for reply_id in reply_ids:
        reply = _reply(http, headers, reply_id)
        assert reply is not None
        assert (reply["status"], reply["content"]) == ("completed", reply_text(40)), (
            reply,
            stack.logs(),
        )
        assert stack.usage_rows(reply_id) == 1
    # A reader from the start sees exactly the stored text, once.
    stream = read_sse_within(http, accepted[0]["stream_url"], headers, 20)
    assert stream.last.event == "done" and stream.text == reply_text(40)


def test_stalled_provider_fails_within_its_timeout_while_the_worker_serves_others(make_stack):
    """The provider sends three tokens, then nothing: the reply fails on the provider timeout
    (3 s), long before the task's soft time limit (20 s) would end it, with an `error` event;
    meanwhile the same worker completes an echo reply submitted during the stall."""
    stack = make_stack(
        PROVIDER_TIMEOUT_SECONDS="3",
        TASK_SOFT_TIME_LIMIT="20",
        TASK_TIME_LIMIT="25",
        BROKER_VISIBILITY_TIMEOUT="30",
    )
    stack.start_worker(concurrency=4)
    http, headers = stack.client()
    stalled_chat = _chat(http, headers, "ollama", STALL_MODEL)
    echo_chat = _chat(http, headers, "echo", "echo-1")
    stalled = _submit(http, headers, stalled_chat, "stall please")
    during_stall: dict[str, Any] = {}

    def serve_another(event: SSEEvent, result: SSEResult) -> None:
        # The stub's three tokens come at once, then the stall.
        if event.event == "token" and not during_stall:
            echo = _submit(http, headers, echo_chat, "still serving")
            during_stall["echo"] = read_sse_within(http, echo["stream_url"], headers, 10)
            during_stall["stalled_status"] = _status(http, headers, stalled["reply_id"])

    try:
        # 15 s: past the provider timeout, short of the soft time limit.
        stream = read_sse_within(http, stalled["stream_url"], headers, 15, on_event=serve_another)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{stack.logs()}")

    echo_stream: SSEResult = during_stall["echo"]
    assert echo_stream.last.event == "done" and echo_stream.text == "Echo: still serving"
    assert during_stall["stalled_status"] == "running"  # served while the stall went on
    assert stream.last.event == "error", (stream.events[-3:], stack.logs())
    assert stream.last.data["status"] == "failed" and stream.last.data["error"]
    reply = _reply(http, headers, stalled["reply_id"])
    assert reply is not None and reply["status"] == "failed" and reply["error"]


# The session's own servers: throwaway ones where nothing answers, the given ones otherwise.


def test_test_servers_keep_urls_whose_servers_answer():
    """The default path: shared servers are up, so the suite uses them as given."""
    postgres, redis_server = PrivatePostgres().start(), PrivateRedis().start()
    try:
        database_url = postgres.url("switchboard_given")
        redis_url = redis_server.url(15)
        servers = ensure_test_servers(database_url, redis_url)
        assert (servers.database_url, servers.redis_url) == (database_url, redis_url)
        assert servers.started == [] and servers.servers == []
        recreate_migrated_database(servers.database_url)  # what the `database` fixture does
    finally:
        redis_server.remove()
        postgres.remove()


def test_test_servers_stand_in_where_nothing_answers():
    import redis

    dead_database, dead_redis = free_port(), free_port()
    servers: SessionServers = ensure_test_servers(
        f"postgresql+psycopg2://postgres@127.0.0.1:{dead_database}/switchboard_stand_in",
        f"redis://127.0.0.1:{dead_redis}/15",
    )
    try:
        assert len(servers.started) == 2, servers.started
        assert f":{dead_database}" in servers.started[0] and "PostgreSQL" in servers.started[0]
        assert f":{dead_redis}" in servers.started[1]
        assert servers.database_url.endswith("/switchboard_stand_in")
        assert servers.redis_url.endswith("/15")
        recreate_migrated_database(servers.database_url)
        client = redis.Redis.from_url(servers.redis_url)
        assert client.ping()
        client.close()
    finally:
        for server in servers.servers:
            server.remove()
    # Stopped and removed: nothing listens where they were.
    for server in servers.servers:
        assert not accepts_connections("127.0.0.1", server.port)
        assert not server.root.exists()
