"""Bringing up what the benchmarks measure: database, stub, API, workers, LiteLLM proxy.

Every process listens on loopback only. The stub runs in its own process so it never shares a
GIL with the load generator or the service.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.harness import (
    Process,
    base_env,
    free_port,
    start_process,
    start_worker,
    wait_until,
)
from tests.helpers import recreate_migrated_database

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_bench"
)
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

# The model name carries the stub's behaviour (tests/stubs/README.md).
MODEL_25 = "stub-model+tokens=25"
MODEL_200 = "stub-model+tokens=200"
MODEL_SLOW_100 = "stub-model+tokens=100+delay=20"  # 100 tokens at 20 ms: 2 s per reply
MODELS = (MODEL_25, MODEL_200, MODEL_SLOW_100)
TOKENS = {MODEL_25: 25, MODEL_200: 200, MODEL_SLOW_100: 100}
FAKE_KEY = "sk-bench-fake-key"


# -- database and redis ------------------------------------------------------------------


def recreate_database(url: str = BENCH_DATABASE_URL) -> None:
    """Drop and create the bench database, then migrate it to head with Alembic."""
    recreate_migrated_database(url)


def flush_redis(url: str = BENCH_REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def pg_connect(url: str = BENCH_DATABASE_URL):  # type: ignore[no-untyped-def]
    import psycopg2
    from sqlalchemy.engine import make_url

    target = make_url(url)
    conn = psycopg2.connect(
        host=target.host,
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        dbname=target.database,
    )
    conn.autocommit = True
    return conn


# -- processes -----------------------------------------------------------------------------


def start_stub(log_dir: Path) -> tuple[Process, str]:
    process = start_process(
        "openai-stub",
        [
            sys.executable,
            "-m",
            "tests.stubs.openai_stub",
            "--port",
            str(free_port()),
            "--tokens",
            "25",
        ],
        base_env(),
        log_dir,
    )
    wait_until(lambda: "listening on" in process.log(), 30, process)
    match = re.search(r"listening on (\S+)", process.log())
    assert match is not None
    return process, match.group(1)  # ends in /v1


BENCH_SECRET_KEY = secrets.token_urlsafe(48)


def service_env(stub_url: str, **overrides: str) -> dict[str, str]:
    env = base_env(
        ENVIRONMENT="test",
        # One key for the run: restart_api reuses tokens signed before the restart.
        SECRET_KEY=BENCH_SECRET_KEY,
        DATABASE_URL=BENCH_DATABASE_URL,
        REDIS_URL=BENCH_REDIS_URL,
        DEFAULT_PROVIDER="openai",
        PROVIDERS_ENABLED="openai",
        MULTI_PROVIDER_ENABLED="true",
        OPENAI_API_KEY=FAKE_KEY,
        OPENAI_API_BASE=stub_url,
        OPENAI_MODELS=",".join(MODELS),
        PROVIDER_MAX_RETRIES="0",
        PROVIDER_TIMEOUT_SECONDS="60",
        TASK_SOFT_TIME_LIMIT="120",
        TASK_TIME_LIMIT="130",
        BROKER_VISIBILITY_TIMEOUT="600",
        SSE_HEARTBEAT_SECONDS="15",
    )
    for name in ("OPENAI_COMPATIBLE_PROVIDERS", "ANTHROPIC_BASE_URL", "OLLAMA_API_URL"):
        env.pop(name, None)
    env.update(overrides)
    return env


def start_experiment_api(env: dict[str, str], log_dir: Path, pool: int) -> tuple[Process, str]:
    """The API through tests.benchmarks.api_experiment (bigger DB pool): an experiment only."""
    port = free_port()
    process = start_process(
        "api-experiment",
        [
            sys.executable,
            "-m",
            "tests.benchmarks.api_experiment",
            "--pool",
            str(pool),
            "--port",
            str(port),
        ],
        env,
        log_dir,
    )
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 30, process)
    return process, base_url


def start_workers(
    env: dict[str, str], log_dir: Path, count: int, concurrency: int
) -> list[Process]:
    """Start `count` worker processes at the same time; return once every one is ready."""
    results: list[Process | BaseException] = [RuntimeError("not started")] * count

    def one(index: int) -> None:
        try:
            results[index] = start_worker(env, log_dir, ["openai"], concurrency)
        except BaseException as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [r for r in results if isinstance(r, BaseException)]
    started = [r for r in results if isinstance(r, Process)]
    if failures:
        for process in started:
            process.stop()
        raise RuntimeError(f"worker did not start: {failures[0]}")
    return started


def litellm_available() -> tuple[bool, str]:
    # Importing litellm fetches a model price list from GitHub unless told not to.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm  # noqa: F401
        import litellm.proxy.proxy_server  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return (
            False,
            f"litellm[proxy] not importable ({type(exc).__name__}: {exc}); "
            "install the bench extra: .venv/bin/pip install -e '.[bench]'",
        )
    if shutil.which("litellm", path=str(Path(sys.executable).parent)) is None:
        return False, "the litellm command is missing from the virtualenv"
    return True, ""


def _litellm_config(models: list[tuple[str, str, str, str]]) -> str:
    """A LiteLLM proxy config: (name clients ask for, LiteLLM model, api_base, api_key)."""
    lines = ["model_list:"]
    for name, model, api_base, api_key in models:
        lines += [
            f'  - model_name: "{name}"',
            "    litellm_params:",
            f'      model: "{model}"',
            f'      api_base: "{api_base}"',
            f'      api_key: "{api_key}"',
        ]
    lines += [
        "litellm_settings:",
        "  set_verbose: false",
        "  turn_off_message_logging: true",
        "  telemetry: false",
        "  drop_params: true",
        "general_settings:",
        "  disable_spend_logs: true",
        "",
    ]
    return "\n".join(lines)


def litellm_config(stub_url: str) -> str:
    return _litellm_config([(model, f"openai/{model}", stub_url, FAKE_KEY) for model in MODELS])


# The model a client asks the LiteLLM proxy in front of Switchboard for.
VIA_SWITCHBOARD_MODEL = "via-switchboard"


def litellm_upstream_config(switchboard_v1: str, api_key: str, model: str) -> str:
    """LiteLLM with Switchboard as its OpenAI-compatible upstream (issue 16's "Done when").

    `openai/<provider>/<model>` in LiteLLM's notation: the `openai/` prefix picks its
    OpenAI-compatible client and is stripped, so Switchboard receives `<provider>/<model>`.
    """
    return _litellm_config([(VIA_SWITCHBOARD_MODEL, f"openai/{model}", switchboard_v1, api_key)])


def start_litellm(
    stub_url: str, log_dir: Path, config_text: str | None = None, name: str = "litellm"
) -> tuple[Process, str, str]:
    """Returns the process, its OpenAI base URL and the master key clients must send.

    By default the proxy serves the stub's models; `config_text` replaces that config (the
    proxy in front of Switchboard), `name` keeps the two proxies' logs apart.
    """
    config = log_dir / f"{name}.yaml"
    config.write_text(config_text if config_text is not None else litellm_config(stub_url))
    port = free_port()
    master_key = "sk-bench-" + secrets.token_hex(24)
    env = base_env(
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no network fetch at start
        LITELLM_TELEMETRY="False",
        NO_DOCS="True",
        # The proxy refuses to start without a master key (auth is a string compare with no
        # database): a random one per run.
        LITELLM_MASTER_KEY=master_key,
    )
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_API_BASE"):
        env.pop(name, None)  # no database, no cache: the proxy stores nothing
    process = start_process(
        name,
        [
            str(Path(sys.executable).parent / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env,
        log_dir,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(base + "/health/liveliness", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 120, process, interval=0.2)
    return process, base + "/v1", master_key


# -- measuring a process -------------------------------------------------------------------


@dataclass
class ProcStats:
    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float


def proc_stats(pid: int) -> ProcStats:
    """CPU (utime + stime) and memory of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    rss = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return ProcStats(cpu, rss, peak)


def cpu_seconds_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = proc_stats(pid).cpu_seconds
        except OSError:
            out[pid] = float("nan")
    return out


def py_spy_available() -> str | None:
    path = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    return path


def start_py_spy(
    pid: int, out: Path, duration: int, fmt: str = "raw"
) -> subprocess.Popen[bytes] | None:
    """py-spy record for `duration` seconds; `raw` gives collapsed stacks to summarise."""
    exe = py_spy_available()
    if exe is None:
        return None
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration),
            "--rate",
            "200",
            "--format",
            fmt,
            "--output",
            str(out),
            "--gil",
            "--nonblocking",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
