"""What planning a reply's route adds to a submission (shared/routing/plan.py).

    .venv/bin/python -m tests.benchmarks.route_planning                  # 2,000 plans each
    .venv/bin/python -m tests.benchmarks.route_planning --plans 500

In-process, on an in-memory catalog (the API's is in memory too), with target health read from
the Redis at BENCH_ROUTING_REDIS_URL (default redis://127.0.0.1:6379/14; only read). Prints
p50 and p99 per kind of route: a plain target (no health read), a model with a fallback chain,
a pool and auto:cheapest (each one Redis round trip for the health of its targets).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("ENVIRONMENT", "test")
os.environ["REDIS_URL"] = os.environ.get("BENCH_ROUTING_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.update(
    {
        "DEFAULT_PROVIDER": "echo",
        "OPENAI_API_KEY": "sk-fake-bench-key",
        "OPENAI_MODELS": "gpt-4,gpt-3.5-turbo",
        "ANTHROPIC_API_KEY": "sk-ant-fake-bench-key",
    }
)

from shared.providers.snapshot import TableState, build_catalog  # noqa: E402
from shared.routing.plan import plan_route  # noqa: E402
from shared.routing.targets import Deployment, RoutingTables, Target  # noqa: E402
from shared.settings import get_settings  # noqa: E402

GPT4 = Target("openai", "gpt-4")
SONNET = Target("anthropic", "claude-3-sonnet-20240229")
ROUTES = {
    "plain target": {"provider": "echo", "model": "echo-1"},
    "fallback chain": {"provider": "openai", "model": "gpt-4"},
    "pool of 2": {"provider": None, "model": "pool:bench"},
    "auto:cheapest": {"provider": None, "model": "auto:cheapest"},
}


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", type=int, default=2000)
    args = parser.parse_args()
    settings = get_settings()
    tables = RoutingTables(
        chains={GPT4: (SONNET,)},
        pools={"bench": (Deployment(GPT4, 3), Deployment(SONNET, 1))},
    )
    catalog = build_catalog(settings, TableState(stamp=(1, None), routing=tables))
    for name, request in ROUTES.items():
        timings: list[float] = []
        for _ in range(args.plans):
            started = time.perf_counter()
            plan_route(
                settings, catalog, chat_provider=None, chat_model=None, options=None, **request
            )
            timings.append((time.perf_counter() - started) * 1e6)
        timings.sort()
        print(
            f"{name:15} p50 {percentile(timings, 0.5):7.1f} us   "
            f"p99 {percentile(timings, 0.99):7.1f} us"
        )


if __name__ == "__main__":
    main()
