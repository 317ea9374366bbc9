"""EXPERIMENT ONLY (`run --experiment-api-pool N`): the API with a larger SQLAlchemy pool.

Not the shipped configuration. It answers one question for the lead: how much of the API's
throughput loss under 50+ concurrent clients comes from the DB pool (10 + 20 connections,
30 s timeout) being smaller than the number of requests that hold a pooled connection while
they wait for a threadpool thread. Patches shared.db.make_engine in this process only.

    python -m tests.benchmarks.api_experiment --pool N --port P
"""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import shared.db as db

    original = db.make_engine

    def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20):  # type: ignore[no-untyped-def]
        return original(url, pool_size=args.pool, max_overflow=0)

    db.make_engine = make_engine  # type: ignore[assignment]
    uvicorn.run("api.main:app", host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
