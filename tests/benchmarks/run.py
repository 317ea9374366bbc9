"""The benchmark suite, one command:

    .venv/bin/python -m tests.benchmarks.run            # the full suite (about 8-10 min, 2 cores)
    .venv/bin/python -m tests.benchmarks.run --quick    # a smoke run (about 3 min)
    options: --profile (py-spy the worker and the API), --out DIR, --plot PATH, --no-plot,
             --only sequential,litellm_upstream,throughput,concurrency,scale_out

Needs PostgreSQL and Redis on loopback (BENCH_DATABASE_URL, default database
`switchboard_bench`, dropped and recreated; BENCH_REDIS_URL, default redis db 13, flushed).
Starts the OpenAI stub (its own process), the API (one uvicorn process), one gevent worker and,
if the `bench` extra is installed, a LiteLLM proxy (one worker, no database) on the same stub.
The sequential rounds also time the native one-request path and, when this checkout serves it,
/v1/chat/completions through the openai SDK; `litellm_upstream` streams one reply through a
second LiteLLM proxy whose upstream is Switchboard's /v1 (the run fails if its text is wrong).
Prints the results table and writes results.json, table.md (and profiles) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks import measure, report
from tests.benchmarks.measure import summary
from tests.benchmarks.services import (
    FAKE_KEY,
    MODEL_25,
    MODEL_200,
    MODEL_SLOW_100,
    TOKENS,
    VIA_SWITCHBOARD_MODEL,
    cpu_seconds_of,
    flush_redis,
    litellm_available,
    litellm_upstream_config,
    proc_stats,
    recreate_database,
    service_env,
    start_experiment_api,
    start_litellm,
    start_py_spy,
    start_stub,
    start_workers,
)
from tests.e2e.harness import REPO, Process, start_api
from tests.stubs._faults import reply_text

# Chats kept for the native one-request path's sequential rounds (5 messages each).
ONE_REQUEST_CHATS = 100


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs = self.out / "logs"
        self.logs.mkdir(exist_ok=True)
        self.results: dict[str, Any] = {"quick": self.quick, "started": time.time()}
        self.stack = ExitStack()
        self.litellm_url: str | None = None
        self.litellm_key = FAKE_KEY
        self.litellm_proc: Process | None = None
        self.worker: Process | None = None
        # The OpenAI-compatible API (/v1), when this checkout serves it, and its sb_ key.
        self.compat_url: str | None = None
        self.api_key = ""
        self.failures: list[str] = []  # checks that make the run fail after it is written

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        log("recreating the bench database and flushing the bench redis db")
        recreate_database()
        flush_redis()
        self.stub_proc, self.stub_url = start_stub(self.logs)
        self.stack.callback(self.stub_proc.stop)
        log(f"stub at {self.stub_url} (pid {self.stub_proc.popen.pid})")
        self.env = service_env(self.stub_url)
        if self.args.experiment_api_pool:
            self.api_proc, self.api_url = start_experiment_api(
                self.env, self.logs, self.args.experiment_api_pool
            )
            log(f"EXPERIMENT: API with a {self.args.experiment_api_pool}-connection DB pool")
            self.results["experiment_api_pool"] = self.args.experiment_api_pool
        else:
            self.api_proc, self.api_url = start_api(self.env, self.logs)
        self.stack.callback(self.api_proc.stop)
        log(f"API at {self.api_url} (pid {self.api_proc.popen.pid})")
        ok, why = litellm_available()
        if ok:
            try:
                self.litellm_proc, self.litellm_url, self.litellm_key = start_litellm(
                    self.stub_url, self.logs
                )
                self.stack.callback(self.litellm_proc.stop)
                log(f"LiteLLM proxy at {self.litellm_url} (pid {self.litellm_proc.popen.pid})")
            except Exception as exc:
                why = f"LiteLLM proxy did not start: {exc}"[:2000]
                ok = False
        if not ok:
            log(f"LITELLM SKIPPED: {why}")
        self.results["litellm"] = {"available": ok, "reason": why}
        self.start_main_worker()
        self.token = measure.register(self.api_url)
        # 8 per client for the 200-client runs, then chats of the native one-request path's own
        # (so its 5-message conversations are as long as the two-request path's).
        n_chats = 8 * 200 + ONE_REQUEST_CHATS
        self.chats = measure.create_chats(self.api_url, self.token, n_chats)
        log(f"user and {n_chats} chats created")
        self.api_key = measure.create_api_key(self.api_url, self.token)
        ok, why = measure.openai_compat_available(self.api_url, self.api_key)
        if ok:
            self.compat_url = self.api_url + "/v1"
            log(f"OpenAI-compatible API at {self.compat_url} (sb_ key created)")
        else:
            log(f"OPENAI-COMPATIBLE API SKIPPED: {why}")
        self.results["openai_compat"] = {"available": ok, "reason": why}

    def start_main_worker(self) -> None:
        self.worker = start_workers(self.env, self.logs, 1, 500)[0]
        log(f"worker (gevent, concurrency 500) pid {self.worker.popen.pid}")

    def stop_main_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def close(self) -> None:
        self.stop_main_worker()
        self.stack.close()

    # -- 1 and 2: sequential -------------------------------------------------------------

    def sequential(self) -> None:
        import openai

        n = 60 if self.quick else 300
        warmup = 10 if self.quick else 30
        assert (warmup + n) // 5 < ONE_REQUEST_CHATS
        direct = openai.OpenAI(api_key=FAKE_KEY, base_url=self.stub_url, max_retries=0)
        peer = (
            openai.OpenAI(api_key=self.litellm_key, base_url=self.litellm_url, max_retries=0)
            if self.litellm_url
            else None
        )
        # The official SDK against Switchboard's /v1, with an sb_ key (issue 16).
        compat = (
            openai.OpenAI(api_key=self.api_key, base_url=self.compat_url, max_retries=0)
            if self.compat_url
            else None
        )
        headers = {"Authorization": f"Bearer {self.token}"}
        expected = reply_text(25)
        names = ["direct", "service", "one_request", "openai_compat", "litellm"]
        series: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        mismatches = dict.fromkeys(names, 0)
        log(
            f"sequential: {warmup} warm-up + {n} rounds of direct -> service (two requests) ->"
            " one request -> /v1/chat/completions -> LiteLLM"
        )
        profilers: list[Any] = []
        with httpx.Client(base_url=self.api_url, timeout=30) as http:
            for i in range(warmup + n):
                if i == warmup and self.args.profile:
                    # Over the measured rounds; stopped (SIGINT writes the stacks) after them.
                    profilers = self.profile_pair("sequential", 600)
                chat = self.chats[i // 5]  # 5-message conversations
                own_chat = self.chats[8 * 200 + i // 5]
                text = f"sequential message {i}"
                rows = {
                    "direct": measure.direct_once(direct, MODEL_25, text),
                    "service": measure.service_once(http, headers, chat, MODEL_25, text),
                    "one_request": measure.one_request_once(
                        http, headers, own_chat, MODEL_25, text
                    ),
                }
                if compat is not None:
                    # provider/model: what a client of the compatible API names.
                    rows["openai_compat"] = measure.direct_once(compat, f"openai/{MODEL_25}", text)
                if peer is not None:
                    rows["litellm"] = measure.direct_once(peer, MODEL_25, text)
                if i < warmup:
                    continue
                for name, row in rows.items():
                    if row.get("text") != expected or row.get("ok") is False:
                        mismatches[name] += 1
                    series[name].append(row)
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        result: dict[str, Any] = {"n": n, "warmup": warmup, "text_mismatches": mismatches}
        for name, rows in series.items():
            if rows:
                result[name] = {
                    "ttft_ms": summary([r["ttft_ms"] for r in rows]),
                    "total_ms": summary([r["total_ms"] for r in rows]),
                }
        svc = series["service"]
        result["service"]["submit_ms"] = summary([r["submit_ms"] for r in svc])
        one = series["one_request"]
        result["one_request"]["submit_ms"] = summary([r["submit_ms"] for r in one])
        # Paired overheads: each service/LiteLLM sample against the direct one of its round.
        for name in ("service", "one_request", "openai_compat", "litellm"):
            if series[name]:
                pairs = list(zip(series[name], series["direct"], strict=False))
                result[name]["ttft_overhead_paired_ms"] = summary(
                    [a["ttft_ms"] - b["ttft_ms"] for a, b in pairs]
                )
                result[name]["total_overhead_paired_ms"] = summary(
                    [a["total_ms"] - b["total_ms"] for a, b in pairs]
                )
        result["breakdown"] = measure.breakdown(svc)
        result["breakdown_one_request"] = measure.breakdown(one)
        if series["openai_compat"]:
            result["breakdown_openai_compat"] = measure.breakdown(series["openai_compat"])
        self.results["sequential"] = result
        log(
            "  TTFT p50 / p99 ms: "
            + ", ".join(
                f"{name} {t['p50']:.1f} / {t['p99']:.1f}"
                for name in names
                if name in result
                for t in [result[name]["ttft_ms"]]
            )
            + f"; text mismatches {mismatches}"
        )
        direct.close()
        for client in (peer, compat):
            if client is not None:
                client.close()

    # -- issue 16: LiteLLM with Switchboard as its upstream ------------------------------

    def litellm_upstream(self) -> None:
        """A second LiteLLM proxy whose model is Switchboard's /v1 streams one reply."""
        import openai

        result: dict[str, Any] = {"ran": False}
        self.results["litellm_upstream"] = result
        if not self.compat_url:
            result["reason"] = "the OpenAI-compatible API is not served by this checkout"
            log(f"LITELLM -> SWITCHBOARD SKIPPED: {result['reason']}")
            return
        if not self.results["litellm"]["available"]:
            result["reason"] = self.results["litellm"]["reason"]
            log(f"LITELLM -> SWITCHBOARD SKIPPED: {result['reason']}")
            return
        config = litellm_upstream_config(self.compat_url, self.api_key, f"openai/{MODEL_25}")
        proc, url, key = start_litellm(
            self.stub_url, self.logs, config_text=config, name="litellm-upstream"
        )
        since = time.time()
        try:
            client = openai.OpenAI(api_key=key, base_url=url, max_retries=0)
            row = measure.direct_once(client, VIA_SWITCHBOARD_MODEL, "through LiteLLM, then us")
            client.close()
        finally:
            proc.stop()
        expected = reply_text(25)
        stored = measure.stored_api_replies(since)
        result.update(
            ran=True,
            stored=stored,
            ok=row["text"] == expected
            and len(stored) == 1
            and stored[0]["content"] == expected
            and stored[0]["usage_rows"] == 1,
            text=row["text"],
            expected=expected,
            ttft_ms=row["ttft_ms"],
            total_ms=row["total_ms"],
        )
        log(
            f"  LiteLLM -> Switchboard /v1 -> stub: {len(row['text'])} chars, "
            f"{'equal to' if row['text'] == expected else 'DIFFERENT FROM'} the stub's "
            f"reply_text(25) (TTFT {row['ttft_ms']:.1f} ms, whole {row['total_ms']:.1f} ms); "
            f"stored as api calls: {stored}"
        )
        if not result["ok"]:
            # The other parts still run and are written; the run ends in failure (main).
            self.failures.append(
                f"LiteLLM -> Switchboard streamed {row['text']!r} (expected {expected!r}); "
                f"stored replies of kind api since: {stored}"
            )

    # -- 3: throughput -------------------------------------------------------------------

    def throughput(self) -> None:
        duration = 5 if self.quick else 15
        budget = 600 if self.quick else 4000
        targets = ["service", "litellm", "direct"] if self.litellm_url else ["service", "direct"]
        pids = {"api": self.api_proc.popen.pid, "stub": self.stub_proc.popen.pid}
        if self.worker:
            pids["worker"] = self.worker.popen.pid
        if self.litellm_proc:
            pids["litellm"] = self.litellm_proc.popen.pid
        runs: list[dict[str, Any]] = []
        # 50 clients first: a run that stalls the API must not spoil the targeted figures.
        for clients in (50, 200):
            for model in (MODEL_25, MODEL_200):
                for target in targets:
                    spec: dict[str, Any] = {
                        "clients": clients,
                        "model": model,
                        "tokens": TOKENS[model],
                        "duration_s": duration,
                        "max_requests": budget,
                    }
                    if target == "service":
                        spec.update(
                            kind="service",
                            base_url=self.api_url,
                            token=self.token,
                            chats=[self.chats[i * 8 : (i + 1) * 8] for i in range(clients)],
                        )
                    else:
                        spec.update(
                            kind="openai",
                            api_key=self.litellm_key if target == "litellm" else FAKE_KEY,
                            base_url=self.litellm_url if target == "litellm" else self.stub_url,
                        )
                    profile = None
                    if self.args.profile and target == "service" and clients == 50:
                        profile = self.profile_pair(f"throughput-{TOKENS[model]}tok-50", duration)
                    before = cpu_seconds_of(list(pids.values()))
                    res = measure.run_loadgen(spec, self.out, timeout=duration + 180)
                    after = cpu_seconds_of(list(pids.values()))
                    if profile:
                        for p in profile:
                            p.wait(60)
                    cpu = {name: after[pid] - before[pid] for name, pid in pids.items()}
                    row = {
                        "target": target,
                        "clients": clients,
                        "tokens": TOKENS[model],
                        "completed": res["completed"],
                        "errors": res["errors"],
                        "error_samples": res["error_samples"],
                        "elapsed_s": res["elapsed_s"],
                        "msgs_per_s": res["msgs_per_s"],
                        "tokens_per_s": res["tokens_per_s"],
                        "ttft_ms": summary(res["ttft_ms"]),
                        "total_ms": summary(res["total_ms"]),
                        "submit_ms": summary(res["submit_ms"]),
                        "cpu_s": cpu,
                    }
                    runs.append(row)
                    log(
                        f"  {target:8s} {clients:3d} clients {TOKENS[model]:3d} tok: "
                        f"{row['msgs_per_s']:7.1f} msg/s {row['tokens_per_s']:8.0f} tok/s "
                        f"ttft p50 {row['ttft_ms']['p50'] or 0:.0f} ms, "
                        f"{row['errors']} errors; cpu "
                        + " ".join(f"{k}={v:.1f}s" for k, v in cpu.items())
                    )
                    if target == "service" and res["errors"]:
                        self.restart_api(pids)
                    try:
                        self.wait_queue_drained()
                    except Exception as exc:  # e.g. PostgreSQL out of connection slots
                        log(f"  WARNING: could not check the queue: {exc}")
        self.results["throughput"] = runs

    def restart_api(self, pids: dict[str, int]) -> None:
        """A stalled API (see docs/benchmarks.md) is restarted so the next run starts clean."""
        log("  restarting the API after a run with errors")
        self.api_proc.stop()
        if self.args.experiment_api_pool:
            self.api_proc, self.api_url = start_experiment_api(
                self.env, self.logs, self.args.experiment_api_pool
            )
        else:
            self.api_proc, self.api_url = start_api(self.env, self.logs)
        self.stack.callback(self.api_proc.stop)
        pids["api"] = self.api_proc.popen.pid

    def wait_queue_drained(self, timeout: float = 120) -> None:
        """No reply left queued/running before the next run starts."""
        deadline = time.monotonic() + timeout
        from contextlib import closing

        from tests.benchmarks.services import pg_connect

        with closing(pg_connect()) as conn, conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM messages WHERE status IN ('queued','running')")
                if cur.fetchone()[0] == 0:
                    return
                time.sleep(0.2)
        log("  WARNING: replies still queued/running after the run")

    def profile_pair(self, label: str, duration: int) -> list[Any]:
        procs = []
        for name, pid in (
            ("worker", self.worker.popen.pid if self.worker else None),
            ("api", self.api_proc.popen.pid),
        ):
            if pid is None:
                continue
            p = start_py_spy(pid, self.out / f"profile-{label}-{name}.txt", duration)
            if p is not None:
                procs.append(p)
        time.sleep(0.5)
        return procs

    # -- 4: concurrency ------------------------------------------------------------------

    def sdk_burst(self, n: int) -> dict[str, Any]:
        return measure.run_loadgen(
            {
                "kind": "sdk_burst",
                "n": n,
                "model": MODEL_SLOW_100,
                "tokens": 100,
                "api_key": FAKE_KEY,
                "base_url": self.stub_url,
            },
            self.out,
            timeout=180,
        )

    def concurrency(self) -> None:
        n = 500
        self.stop_main_worker()
        log(f"concurrency: {n} x 100 tokens at 20 ms; direct SDK burst first")
        direct = [self.sdk_burst(n)]
        ids, t0, t1 = measure.submit_many(self.api_url, self.token, self.chats, MODEL_SLOW_100, n)
        log(f"  {n} submitted in {t1 - t0:.2f} s with no worker running; starting the worker")
        worker = start_workers(self.env, self.logs, 1, 500)[0]
        pid = worker.popen.pid
        ready = proc_stats(pid)
        profiler = None
        if self.args.profile:
            profiler = start_py_spy(pid, self.out / "profile-concurrency-worker.txt", 12)
        finished = measure.wait_final(ids, timeout=240)
        end = proc_stats(pid)
        if profiler is not None:
            profiler.wait(60)
        outcome = measure.burst_outcome(ids, reply_text(100), 100)
        worker.stop()
        direct.append(self.sdk_burst(n))
        direct_wall = min(d["wall_s"] for d in direct)
        result = {
            "n": n,
            "finished": finished,
            "outcome": outcome,
            "submit_s": t1 - t0,
            "direct_wall_s": [d["wall_s"] for d in direct],
            "direct_errors": [d["errors"] for d in direct],
            "direct_wall_best_s": direct_wall,
            "worker_cpu_s": end.cpu_seconds - ready.cpu_seconds,
            "worker_cpu_us_per_token": (end.cpu_seconds - ready.cpu_seconds) / (n * 100) * 1e6,
            "worker_peak_rss_mb": end.peak_rss_mb,
            "worker_rss_at_ready_mb": ready.rss_mb,
        }
        wall = outcome["wall_from_first_claim_s"]
        result["ratio_to_direct"] = wall / direct_wall if wall and direct_wall else None
        self.results["concurrency"] = result
        log(
            f"  worker wall {wall or float('nan'):.2f} s vs direct {direct_wall:.2f} s; "
            f"peak RSS {end.peak_rss_mb:.0f} MB; CPU {result['worker_cpu_s']:.1f} s; "
            f"lost {outcome['lost']}, usage!=1 {outcome['usage_rows_not_one']}"
        )

    # -- 5: scale-out --------------------------------------------------------------------

    def scale_out(self) -> None:
        n = 200
        rows = {}
        for count in (1, 2):
            workers = start_workers(self.env, self.logs, count, 50)
            time.sleep(1.0)  # let every consumer reach its broker loop
            ids, t0, t1 = measure.submit_many(
                self.api_url, self.token, self.chats, MODEL_SLOW_100, n
            )
            finished = measure.wait_final(ids, timeout=240)
            outcome = measure.burst_outcome(ids, reply_text(100), 100)
            for w in workers:
                w.stop()
            outcome["finished"] = finished
            outcome["submit_s"] = t1 - t0
            rows[count] = outcome
            wall = outcome["wall_from_first_insert_s"] or float("nan")
            log(
                f"  scale-out {count} worker(s) x 50: wall {wall:.2f}"
                f" s (submit took {t1 - t0:.2f} s), lost {outcome['lost']}"
            )
        one, two = rows[1]["wall_from_first_insert_s"], rows[2]["wall_from_first_insert_s"]
        self.results["scale_out"] = {
            "n": n,
            "one": rows[1],
            "two": rows[2],
            "ratio": two / one if one and two else None,
        }


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "fastapi",
        "uvicorn",
        "celery",
        "kombu",
        "gevent",
        "redis",
        "SQLAlchemy",
        "psycopg2-binary",
        "openai",
        "httpx",
        "httpx2",
        "sse-starlette",
        "litellm",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "packages": versions,
    }
    try:
        import psycopg2  # noqa: F401

        from tests.benchmarks.services import pg_connect

        conn = pg_connect()
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgresql"] = cur.fetchone()[0]
        conn.close()
        import redis

        from tests.benchmarks.services import BENCH_REDIS_URL

        info["redis"] = redis.Redis.from_url(BENCH_REDIS_URL).info()["redis_version"]
    except Exception as exc:  # informational only
        info["servers_error"] = str(exc)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter loads")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker and the API")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/switchboard-bench") / time.strftime("%Y%m%d-%H%M%S")
    )
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "benchmarks-latency.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--experiment-api-pool",
        type=int,
        default=0,
        metavar="N",
        help="EXPERIMENT: run the API with an N-connection DB pool (not shipped)",
    )
    parser.add_argument(
        "--only",
        default="sequential,litellm_upstream,throughput,concurrency,scale_out",
        help="comma-separated parts to run",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    suite = Suite(args)
    parts = set(args.only.split(","))
    try:
        suite.setup()
        if "sequential" in parts:
            suite.sequential()
        if "litellm_upstream" in parts:
            suite.litellm_upstream()
        if "throughput" in parts:
            suite.throughput()
        if "concurrency" in parts:
            suite.concurrency()
        if "scale_out" in parts:
            suite.scale_out()
    finally:
        suite.close()
        suite.results["machine"] = machine_info()
        suite.results["duration_s"] = time.monotonic() - started
        (args.out / "results.json").write_text(json.dumps(suite.results, indent=2, default=str))
    table = report.table(suite.results)
    (args.out / "table.md").write_text(table + "\n")
    print()
    print(table)
    if not args.no_plot and "throughput" in parts and "sequential" in parts:
        path = report.plot(suite.results, args.plot)
        if path:
            log(f"plot written to {path}")
    if args.profile:
        from tests.benchmarks.profile import render, summarise

        for stacks in sorted(args.out.glob("profile-*.txt")):
            if stacks.stat().st_size:
                text = render(summarise(stacks))
                (stacks.with_suffix(".summary")).write_text(text + "\n")
                print(f"\n== {stacks.name}\n{text}")
    log(f"done in {suite.results['duration_s'] / 60:.1f} min; results in {args.out}")
    for failure in suite.failures:
        log(f"FAILED: {failure}")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main())
