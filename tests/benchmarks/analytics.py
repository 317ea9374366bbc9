"""Admin analytics at 1M usage rows: seed, then time the admin routes through a live API.

    .venv/bin/python -m tests.benchmarks.analytics            # seed + 50 runs of each query
    .venv/bin/python -m tests.benchmarks.analytics --runs 20 --no-seed

Fills BENCH_ANALYTICS_DATABASE_URL (default database `switchboard_bench_analytics` on
127.0.0.1:5432, dropped and recreated) with 10,000 users and 1,000,000 provider_usage rows
spread evenly over 90 days, in time order as the workers append them (two INSERT ... SELECT
over generate_series, about 30 s). Rows carry random chat/message ids, as real rows do, with
foreign-key triggers off for the load (session_replication_role), so no chats or messages are
needed. The load runs with triggers off too, so the rollups (migration 0007) are then
rebuilt from scratch in one `usage_rollup_advance` call, timed. Then starts one uvicorn
(loopback) and times, sequentially over HTTP:

* `GET /admin/usage?group_by=day,provider` over the last 30 days (about 333,000 rows), the
  target; the same grouped by hour, and over 1 day and 8 hours (below
  EXACT_PERCENTILE_ROWS: read from the rows, exact percentiles);
* `GET /admin/users?limit=50` (and at offset 5000),

and reports p50/p95, bytes per usage row including its indexes, the rollup tables' sizes, and
what the rollup triggers add to a one-row usage insert (as workers write): a row after the
watermark (every finished generation) and one before it (a late row).
"""

from __future__ import annotations

import argparse
import datetime as dt
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
ORDER BY g  -- in time order on disk, as appended rows are (a hash join would shuffle them)
"""


def _since(hours: int) -> str:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    return "from=" + start.strftime("%Y-%m-%dT%H:%M:%SZ")


USAGE_QUERIES = (
    ("usage_30d_day_provider", "/admin/usage?group_by=day,provider"),
    ("usage_30d_hour", "/admin/usage?group_by=hour"),
    ("usage_1d_provider", "/admin/usage?group_by=provider&{last_1d}"),
    ("usage_8h_provider", "/admin/usage?group_by=provider&{last_8h}"),
)


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


ROLLUP_TABLES = ("usage_rollup_hourly", "usage_rollup_daily", "usage_rollup_state")


def rebuild_rollups() -> float:
    """The seed skipped the triggers (replica role): roll everything up again, as one pass."""
    conn = pg_connect(DATABASE_URL)
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")
        started = time.perf_counter()
        cur.execute("SELECT usage_rollup_advance(now() - interval '5 minutes')")
        elapsed = time.perf_counter() - started
        for table in ROLLUP_TABLES:
            cur.execute(f"VACUUM ANALYZE {table}")
    conn.close()
    return elapsed


def rollup_storage(cur: Any) -> dict[str, Any]:
    sizes = {}
    for table in ROLLUP_TABLES[:2]:
        cur.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
        rows, total = cur.fetchone()
        sizes[table] = {"rows": rows, "bytes": total, "bytes_per_row": total / max(rows, 1)}
    cur.execute("SELECT hours_before, days_before FROM usage_rollup_state")
    hours_before, days_before = cur.fetchone()
    sizes["watermarks"] = {"hours_before": str(hours_before), "days_before": str(days_before)}
    return sizes


PROBE_FUNCTION = """
CREATE FUNCTION pg_temp.insert_usage(n integer, age interval) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP  -- late rows: each into another hour, as separate late rows would
        INSERT INTO provider_usage (provider_name, model_name, prompt_tokens, completion_tokens,
            tokens_used, cost, response_time_ms, time_to_first_token_ms, status, created_at)
        VALUES ('openai', 'gpt-4', 10, 5, 15, 0.000015, 900, 120, 'completed',
                now() - CASE WHEN age = '0' THEN age ELSE age + i * interval '1 hour' END);
    END LOOP;
END $$
"""


def insert_cost(rows: int = 5000) -> dict[str, float]:
    """Server time of one single-row INSERT statement (as a worker's finish does), in µs:
    triggers on with created_at after the watermark (every finished generation) and before it
    (a late row: cells updated), and triggers off. Each run is one transaction of `rows`
    inserts, rolled back, so commits and fsync stay out of the figure and nothing is kept."""
    conn = pg_connect(DATABASE_URL)
    out = {}
    with conn.cursor() as cur:
        cur.execute(PROBE_FUNCTION)
        for label, age, triggers in (
            ("after_watermark_us", "0", True),
            ("before_watermark_us", "2 days", True),
            ("triggers_off_us", "0", False),
            ("after_watermark_again_us", "0", True),
        ):
            cur.execute("BEGIN")
            if not triggers:
                cur.execute("ALTER TABLE provider_usage DISABLE TRIGGER USER")
            started = time.perf_counter()
            count = rows if age == "0" else rows // 10  # the late path is slower
            cur.execute("SELECT pg_temp.insert_usage(%s, %s::interval)", (count, age))
            out[label] = (time.perf_counter() - started) * 1e6 / count
            cur.execute("ROLLBACK")
        cur.execute("VACUUM ANALYZE provider_usage")
        # Probe rows may have landed in free space of old pages, widening their block ranges
        # to today (BRIN summaries widen at insert, rollback or not): summarise them afresh,
        # so a --no-seed run measures what a first one did.
        cur.execute("REINDEX INDEX idx_provider_usage_created_brin")
    conn.close()
    return out


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
        # 1.0 when rows lie on disk in time order, as BRIN needs (appended rows do).
        cur.execute(
            "SELECT correlation FROM pg_stats"
            " WHERE tablename = 'provider_usage' AND attname = 'created_at'"
        )
        correlation = cur.fetchone()[0]
        rollups = rollup_storage(cur)
    conn.close()
    return {
        "rows": rows,
        "bytes_per_row": total / rows,
        "heap_bytes_per_row": heap / rows,
        "index_bytes_per_row": indexes,
        "created_at_correlation": correlation,
        "rollups": rollups,
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
        results["rollup_rebuild_seconds"] = rebuild_rollups()
        log(f"rolled up in {results['rollup_rebuild_seconds']:.1f} s")
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
                for name, url in USAGE_QUERIES:
                    url = url.format(last_1d=_since(24), last_8h=_since(8))
                    results[name] = time_route(client, url, headers, args.runs)
                results["users_page_50"] = time_route(
                    client, "/admin/users?limit=50", headers, args.runs
                )
                results["users_page_50_offset_5000"] = time_route(
                    client, "/admin/users?limit=50&offset=5000", headers, args.runs
                )
        finally:
            api.stop()
    results["insert_cost"] = insert_cost()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
