"""Admin analytics at 1M usage rows: seed, then time the admin routes through a live API.

    .venv/bin/python -m tests.benchmarks.analytics            # seed + 50 runs of each query
    .venv/bin/python -m tests.benchmarks.analytics --runs 20 --no-seed

Fills BENCH_ANALYTICS_DATABASE_URL (default database `switchboard_bench_analytics` on
127.0.0.1:5432, dropped and recreated) with 10,000 users and 1,000,000 provider_usage rows
spread evenly over 90 days, in time order as the workers append them (two INSERT ... SELECT
over generate_series, about 30 s). Rows carry random chat/message ids, as real rows do, with
foreign-key triggers off for the load (session_replication_role), so no chats or messages are
needed. Then starts one uvicorn (loopback) and times, sequentially over HTTP:

* `GET /admin/usage?group_by=day,provider` over the last 30 days (about 333,000 rows),
* `GET /admin/users?limit=50`,

and reports p50/p95 and bytes per usage row including its indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.services import pg_connect
from tests.e2e.harness import base_env, start_api
from tests.helpers import recreate_migrated_database

DATABASE_URL = os.environ.get(
    "BENCH_ANALYTICS_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_bench_analytics",
)
# The API builds a Redis client at start-up but these routes never use it.
REDIS_URL = os.environ.get("BENCH_ANALYTICS_REDIS_URL", "redis://127.0.0.1:6379/12")
USERS = 10_000
USAGE_ROWS = 1_000_000
SPAN_DAYS = 90
ADMIN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")

SEED_USERS = f"""
INSERT INTO users (id, email, password_hash, is_admin, is_active, created_at, updated_at)
SELECT CASE WHEN g = 1 THEN '{ADMIN_ID}'::uuid ELSE gen_random_uuid() END,
       'bench-' || lpad(g::text, 5, '0') || '@example.com', 'not-a-hash', g = 1, true,
       now(), now()
FROM generate_series(1, {USERS}) AS g
"""

# Five providers, ten models, 2% failed and 2.5% cancelled, varied token counts and latencies.
SEED_USAGE = f"""
WITH numbered AS (
    SELECT row_number() OVER (ORDER BY email) - 1 AS n, id FROM users
)
INSERT INTO provider_usage (
    user_id, provider_name, model_name, chat_id, message_id, tokens_used, prompt_tokens,
    completion_tokens, usage_estimated, prompt_tokens_estimated, completion_tokens_estimated,
    cost, response_time_ms, time_to_first_token_ms, status, created_at)
SELECT u.id, p.provider, p.model, gen_random_uuid(), gen_random_uuid(), s.pt + s.ct, s.pt, s.ct,
       false, false, false, round((s.pt * 0.0005 + s.ct * 0.0015) / 1000, 12), s.rt, s.rt / 4,
       CASE WHEN g % 50 = 0 THEN 'failed' WHEN g % 40 = 0 THEN 'cancelled' ELSE 'completed' END,
       now() - interval '{SPAN_DAYS} days' + g * interval '{SPAN_DAYS} days' / {USAGE_ROWS}
FROM generate_series(1::bigint, {USAGE_ROWS}) AS g
JOIN numbered AS u ON u.n = (g * 7919) % {USERS}
CROSS JOIN LATERAL (
    SELECT (ARRAY['openai', 'anthropic', 'ollama', 'groq', 'vllm'])[1 + g % 5] AS provider,
           (ARRAY['gpt-4o', 'claude-3-5-sonnet', 'llama3', 'mixtral', 'qwen2'])[1 + g % 5]
           || CASE WHEN g % 3 = 0 THEN '-mini' ELSE '' END AS model
) AS p
CROSS JOIN LATERAL (
    SELECT 50 + (g * 31) % 1500 AS pt, 20 + (g * 17) % 600 AS ct, 200 + (g * 13) % 5000 AS rt
) AS s
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seed() -> float:
    started = time.perf_counter()
    recreate_migrated_database(DATABASE_URL)
    conn = pg_connect(DATABASE_URL)
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK checks for the load
        cur.execute(SEED_USERS)
        cur.execute(SEED_USAGE)
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return time.perf_counter() - started


def storage() -> dict[str, Any]:
    conn = pg_connect(DATABASE_URL)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), pg_total_relation_size('provider_usage'),"
            " pg_relation_size('provider_usage') FROM provider_usage"
        )
        rows, total, heap = cur.fetchone()
        cur.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = 'provider_usage'::regclass ORDER BY 1"
        )
        indexes = {name: size / rows for name, size in cur.fetchall()}
    conn.close()
    return {
        "rows": rows,
        "bytes_per_row": total / rows,
        "heap_bytes_per_row": heap / rows,
        "index_bytes_per_row": indexes,
    }


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def time_route(
    client: httpx.Client, url: str, headers: dict[str, str], runs: int
) -> dict[str, Any]:
    first = client.get(url, headers=headers)  # warm-up, and a sanity check of the answer
    first.raise_for_status()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return {
        "url": url,
        "runs": runs,
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "max_ms": max(times),
        "answer_bytes": len(first.content),
        "groups": len(first.json()["data"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded database")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000:
        parser.error("--runs: 1 to 1000")

    results: dict[str, Any] = {}
    if not args.no_seed:
        log(f"seeding {USERS} users and {USAGE_ROWS} usage rows over {SPAN_DAYS} days")
        results["seed_seconds"] = seed()
        log(f"seeded in {results['seed_seconds']:.1f} s")
    results["storage"] = storage()

    from shared.security import create_access_token

    secret = secrets.token_urlsafe(48)
    env = base_env(
        ENVIRONMENT="test",
        SECRET_KEY=secret,
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        DEFAULT_PROVIDER="echo",
    )
    headers = {"Authorization": f"Bearer {create_access_token(ADMIN_ID, secret, 60)}"}
    with tempfile.TemporaryDirectory() as logs:
        api, base_url = start_api(env, Path(logs))
        try:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                results["usage_30d_day_provider"] = time_route(
                    client, "/admin/usage?group_by=day,provider", headers, args.runs
                )
                results["users_page_50"] = time_route(
                    client, "/admin/users?limit=50", headers, args.runs
                )
                results["users_page_50_offset_5000"] = time_route(
                    client, "/admin/users?limit=50&offset=5000", headers, args.runs
                )
        finally:
            api.stop()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
