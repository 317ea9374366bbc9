"""The native one-request path's TTFT cut at every Redis command, with Redis MONITOR.

    python -m tests.benchmarks.queue_hop [--rounds 60]

Where does "row -> worker claim" go (docs/benchmarks.md)? This starts its own redis-server
on a free loopback port (MONITOR slows a server down and shows every client's commands, so
never the shared one), recreates the bench database (BENCH_DATABASE_URL), starts the stub,
one uvicorn API and one gevent worker on them, and runs `--rounds` sequential one-request
submissions (`POST /chats/{id}/messages`, `Accept: text/event-stream`) while MONITOR records.
Clocks: the client's wall clock, PostgreSQL's (`created_at`, `started_at` = the claim
transaction's start) and Redis's (MONITOR's timestamps), all this machine's.

Commands found per reply, by its id in their arguments: the API's LPUSH of the Celery message
(right after the submit's COMMIT; its headers name the task's arguments) and SET of the
enqueued marker (after the LPUSH, off the critical path), the worker's HSET into kombu's
`unacked` hash (the delivery reached the worker), the API's first XREAD of the reply's stream,
and the worker's first EVALSHA (the first token's append). A first delivery claims before it
looks for a spooled outcome, so the claim transaction's start follows the HSET directly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.benchmarks import measure
from tests.benchmarks.measure import summary
from tests.benchmarks.services import (
    MODEL_25,
    pg_connect,
    recreate_database,
    service_env,
    start_stub,
    start_workers,
)
from tests.e2e.harness import free_port, start_api


def start_redis(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(log_dir)],
        stdout=(log_dir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.RedisError:
            return False

    deadline = time.monotonic() + 20
    while not ready():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return proc, url


def record(url: str, into: list[dict[str, Any]], stop: threading.Event) -> None:
    client = redis.Redis.from_url(url)
    with client.monitor() as monitor:
        for entry in monitor.listen():
            into.append(entry)
            if stop.is_set():
                return


def first(commands: list[dict[str, Any]], reply_id: str, verb: str) -> float | None:
    for entry in commands:
        command = entry.get("command", "")
        if command.upper().startswith(verb) and reply_id in command:
            return float(entry["time"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="queue-hop-"))
    redis_proc, redis_url = start_redis(logs)
    recreate_database()
    stub, stub_url = start_stub(logs)
    env = service_env(stub_url, REDIS_URL=redis_url)
    api, base = start_api(env, logs)
    worker = start_workers(env, logs, 1, 500)[0]
    commands: list[dict[str, Any]] = []
    stop = threading.Event()
    samples = []
    try:
        token = measure.register(base)
        chats = measure.create_chats(base, token, (args.rounds + args.warmup) // 5 + 1)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(args.warmup):
                measure.one_request_once(http, headers, chats[i // 5], MODEL_25, f"warm {i}")
            thread = threading.Thread(target=record, args=(redis_url, commands, stop), daemon=True)
            thread.start()
            time.sleep(0.5)  # MONITOR is on before the first round
            for i in range(args.warmup, args.warmup + args.rounds):
                samples.append(
                    measure.one_request_once(http, headers, chats[i // 5], MODEL_25, f"hop {i}")
                )
        stop.set()
        redis.Redis.from_url(redis_url).ping()  # one more command ends the listener
        thread.join(5)
    finally:
        worker.stop()
        api.stop()
        stub.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
    ids = [s["reply_id"] for s in samples]
    with closing(pg_connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id::text, extract(epoch from created_at), extract(epoch from started_at)"
            " FROM messages WHERE id::text = ANY(%s)",
            (ids,),
        )
        rows = {r[0]: (float(r[1]), float(r[2])) for r in cur.fetchall()}
    pieces: dict[str, list[float]] = {
        k: []
        for k in (
            "client send -> reply row (auth, chat, validation)",
            "row -> LPUSH of the job (INSERT, UPDATE, COMMIT, Celery send_task)",
            "LPUSH -> HSET unacked (broker delivery to the worker)",
            "HSET unacked -> claim transaction starts (Celery task start, claim set-up)",
            "LPUSH -> SET of the enqueued marker (after the job, off the path)",
            "claim starts -> first token EVALSHA (claim, history, provider call)",
            "first token EVALSHA -> token at the client",
            "LPUSH -> the API's first XREAD of the reply's stream",
            "TTFT (client)",
        )
    }
    names = list(pieces)
    missing = 0
    for s in samples:
        rid = s["reply_id"]
        marker, lpush = first(commands, rid, "SET"), first(commands, rid, "LPUSH")
        hset = first(commands, rid, "HSET")
        xread, append = first(commands, rid, "XREAD"), first(commands, rid, "EVALSHA")
        found = (marker, lpush, hset, append)
        if rid not in rows or None in found or s["first_wall"] is None:
            missing += 1
            continue
        created, started = rows[rid]
        assert marker and lpush and hset and append
        values = [
            created - s["t0_wall"],
            lpush - created,
            hset - lpush,
            started - hset,
            marker - lpush,
            append - started,
            s["first_wall"] - append,
            (xread - lpush) if xread is not None else None,
            s["ttft_ms"] / 1000,
        ]
        for name, value in zip(names, values, strict=True):
            if value is not None:
                pieces[name].append(value * 1000)
    out = {name: summary(values) for name, values in pieces.items()}
    out["_samples"] = {"rounds": len(samples), "unmatched": missing, "commands": len(commands)}
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
        # Every command of the last round, to see what else names the reply.
        rid = samples[-1]["reply_id"]
        trace = [c for c in commands if rid in c.get("command", "")]
        args.out.with_suffix(".trace.json").write_text(json.dumps(trace, indent=1, default=str))
    print(f"{len(samples)} rounds, {missing} without every command; ms, p50 / p99:")
    for name in names:
        p = out[name]
        if p["n"]:
            print(f"  {name:70s} {p['p50']:6.2f} / {p['p99']:6.2f}")


if __name__ == "__main__":
    main()
