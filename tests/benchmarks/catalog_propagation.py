"""How fast a provider change reaches running processes (issue 13 item 3: at most 2 s).

    .venv/bin/python -m tests.benchmarks.catalog_propagation              # 20 rounds
    .venv/bin/python -m tests.benchmarks.catalog_propagation --rounds 5 --out results.json

Starts, on loopback, two APIs on one database and one worker started WITHOUT -Q (it
consumes every provider queue, following the catalog), all with a PROVIDER_KEYS_SECRET, and
two OpenAI stubs in threads of this process (so their arrival times share its clock). Uses
BENCH_CATALOG_DATABASE_URL (dropped and recreated) and BENCH_CATALOG_REDIS_URL (flushed).
Each round measures:

* add: an admin POSTs /admin/providers (a new name each round) to the first API; right
  after the answer a chat and a message for the new provider go to the same API, and the
  time runs from the POST's answer until GET /messages/{reply} leaves `queued` (the worker
  consumes the new queue and claimed the job);
* second API: from the same POST answer until GET /providers on the second API lists it;
* endpoint change: messages go to one provider every 50 ms while its api_endpoint is PATCHed
  to the other stub; the time runs from the PATCH's answer until the first generation request
  reaches the new stub.

Polls every 10 ms, so each figure includes up to 10 ms (50 ms for the endpoint change) of
sampling. A round that takes over --timeout seconds counts as a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.benchmarks.services import flush_redis, pg_connect
from tests.e2e.harness import Process, base_env, start_api, start_worker
from tests.helpers import recreate_migrated_database, register_and_login
from tests.stubs._server import Request, Response, StreamResponse
from tests.stubs.openai_stub import OpenAIStub

# Its own database, never BENCH_DATABASE_URL: this drops it, and other benchmarks share that.
DATABASE_URL = os.environ.get(
    "BENCH_CATALOG_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_bench_catalog",
)
REDIS_URL = os.environ.get("BENCH_CATALOG_REDIS_URL", "redis://127.0.0.1:6379/12")
POLL_SECONDS = 0.01
SUBMIT_EVERY_SECONDS = 0.05


class TimedStub(OpenAIStub):
    """Notes when each generation request arrives, on this process's monotonic clock."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def handle(self, request: Request) -> Response | StreamResponse:
        if request.path.endswith("/chat/completions"):
            self.arrivals.append(time.monotonic())
        return await super().handle(request)

    def first_arrival_after(self, moment: float) -> float | None:
        return next((t for t in list(self.arrivals) if t >= moment), None)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_all_queues_worker(env: dict[str, str], log_dir: Path) -> Process:
    return start_worker(env, log_dir, None, concurrency=20, name="bench-all-queues")


@contextmanager
def running(processes: list[Process]) -> Iterator[list[Process]]:
    try:
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()


def poll_until(predicate: Any, timeout: float) -> float | None:
    """Monotonic time at which `predicate()` first held, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    return None


def provider_body(name: str, endpoint: str) -> dict[str, Any]:
    return {
        "provider_name": name,
        "adapter": "openai_compatible",
        "api_endpoint": endpoint,
        "api_key": "sk-bench-" + secrets.token_hex(8),
        "default_model": "stub-model",
        "models": ["stub-model"],
    }


def submit(client: httpx.Client, headers: dict[str, str], provider: str) -> str:
    chat = client.post(
        "/chats", json={"provider": provider, "model": "stub-model"}, headers=headers
    )
    chat.raise_for_status()
    answer = client.post(
        f"/chats/{chat.json()['id']}/messages", json={"message": "hello"}, headers=headers
    )
    answer.raise_for_status()
    return str(answer.json()["reply_id"])


def measure_add(
    first: httpx.Client,
    second: httpx.Client,
    headers: dict[str, str],
    name: str,
    endpoint: str,
    timeout: float,
) -> tuple[float | None, float | None]:
    """(add to the worker, add to the second API), in ms from the POST's answer."""
    created = first.post("/admin/providers", json=provider_body(name, endpoint), headers=headers)
    answered = time.monotonic()
    if created.status_code != 201:
        raise RuntimeError(f"POST /admin/providers: {created.status_code} {created.text}")
    listed_at: list[float | None] = [None]

    def listed() -> bool:
        providers = second.get("/providers", headers=headers).json()
        return any(p["name"] == name for p in providers)

    watcher = threading.Thread(target=lambda: listed_at.__setitem__(0, poll_until(listed, timeout)))
    watcher.start()
    reply_id = submit(first, headers, name)

    def claimed() -> bool:
        return first.get(f"/messages/{reply_id}", headers=headers).json()["status"] != "queued"

    claimed_at = poll_until(claimed, timeout)
    watcher.join(timeout + 5)

    def ms(moment: float | None) -> float | None:
        return None if moment is None else (moment - answered) * 1000

    return ms(claimed_at), ms(listed_at[0])


def measure_endpoint_changes(
    client: httpx.Client,
    headers: dict[str, str],
    name: str,
    stubs: tuple[tuple[TimedStub, str], tuple[TimedStub, str]],
    rounds: int,
    timeout: float,
) -> list[float | None]:
    """Switch `name` between the two stubs `rounds` times while submitting every 50 ms."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_submitting() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop.is_set():
                try:
                    submit(own, headers, name)
                except BaseException as exc:
                    errors.append(exc)
                    return
                stop.wait(SUBMIT_EVERY_SECONDS)

    submitter = threading.Thread(target=keep_submitting, daemon=True)
    submitter.start()
    results: list[float | None] = []
    try:
        for index in range(rounds):
            stub, url = stubs[(index + 1) % 2]  # the provider starts at stubs[0]
            changed = client.patch(
                f"/admin/providers/{name}", json={"api_endpoint": url}, headers=headers
            )
            answered = time.monotonic()
            if changed.status_code != 200:
                raise RuntimeError(f"PATCH: {changed.status_code} {changed.text}")
            poll_until(lambda s=stub, t=answered: s.first_arrival_after(t) is not None, timeout)
            if errors:
                raise RuntimeError(f"submitting failed: {errors[0]!r}")
            first = stub.first_arrival_after(answered)
            results.append(None if first is None else (first - answered) * 1000)
            time.sleep(0.3)  # let replies already headed for the old stub drain
    finally:
        stop.set()
        submitter.join(10)
    return results


def summary(values: list[float | None]) -> dict[str, Any]:
    got = sorted(v for v in values if v is not None)
    out: dict[str, Any] = {"rounds": len(values), "misses": len(values) - len(got)}
    if got:
        quantiles = statistics.quantiles(got, n=100, method="inclusive") if len(got) > 1 else None
        out.update(
            p50_ms=round(statistics.median(got), 1),
            p95_ms=round(quantiles[94] if quantiles else got[0], 1),
            max_ms=round(got[-1], 1),
        )
    return out


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a miss")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 200:
        parser.error("--rounds: 1 to 200")
    if not 1 <= args.timeout <= 60:
        parser.error("--timeout: 1 to 60")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    log("recreating the database")
    recreate_migrated_database(DATABASE_URL)
    flush_redis(REDIS_URL)
    check_seconds = os.environ.get("PROVIDER_CATALOG_CHECK_SECONDS", "1")
    env = base_env(
        ENVIRONMENT="test",  # admits loopback provider endpoints (the stubs)
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        DEFAULT_PROVIDER="echo",
        ECHO_MODELS="echo-1",
        PROVIDER_KEYS_SECRET=Fernet.generate_key().decode(),
        PROVIDER_CATALOG_CHECK_SECONDS=check_seconds,
        PROVIDER_MAX_RETRIES="0",
    )
    for name in ("OPENAI_COMPATIBLE_PROVIDERS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(name, None)

    results: dict[str, Any] = {"rounds": args.rounds, "check_seconds": float(check_seconds)}
    with ExitStack() as stack:
        if args.log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            log_dir = args.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        stub_a, stub_b = TimedStub(), TimedStub()
        url_a = stack.enter_context(stub_a.serve_in_thread())
        url_b = stack.enter_context(stub_b.serve_in_thread())
        processes = stack.enter_context(running([]))
        first_api, first_url = start_api(env, log_dir)
        processes.append(first_api)
        second_api, second_url = start_api(env, log_dir)
        processes.append(second_api)
        processes.append(start_all_queues_worker(env, log_dir))
        log("two APIs and an all-queues worker are up")

        first = stack.enter_context(httpx.Client(base_url=first_url, timeout=30))
        second = stack.enter_context(httpx.Client(base_url=second_url, timeout=30))
        email = f"bench-admin-{secrets.token_hex(4)}@example.com"
        headers = register_and_login(first, email)
        conn = pg_connect(DATABASE_URL)
        with conn.cursor() as cur:
            cur.execute("UPDATE users SET is_admin = true WHERE email = %s", (email,))
        conn.close()

        to_worker: list[float | None] = []
        to_second_api: list[float | None] = []
        for index in range(args.rounds):
            worker_ms, api_ms = measure_add(
                first, second, headers, f"lab{index}", url_a, args.timeout
            )
            to_worker.append(worker_ms)
            to_second_api.append(api_ms)
        results["add_to_worker"] = summary(to_worker)
        results["add_to_second_api"] = summary(to_second_api)
        log(f"add: worker {results['add_to_worker']}, second API {results['add_to_second_api']}")

        changes = measure_endpoint_changes(
            first, headers, "lab0", ((stub_a, url_a), (stub_b, url_b)), args.rounds, args.timeout
        )
        results["endpoint_change"] = summary(changes)
        log(f"endpoint change: {results['endpoint_change']}")
        results["raw_ms"] = {
            "add_to_worker": to_worker,
            "add_to_second_api": to_second_api,
            "endpoint_change": changes,
        }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
