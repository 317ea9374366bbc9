"""What an `sb_` API key costs a request against a JWT (issue 16: the /v1 path authenticates
with keys, the native benchmark path with a JWT).

    python -m tests.benchmarks.auth_cost [--rounds 500]

Recreates the bench database (BENCH_DATABASE_URL), flushes BENCH_REDIS_URL, starts one uvicorn
API (no worker: submitted replies stay queued, which the submit's timing does not depend on),
then times, interleaved round by round, `GET /users/me` and a native submit
(`POST /chats/{id}/messages`, 202) once with the JWT and once with an `sb_` key.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx

from tests.benchmarks import measure
from tests.benchmarks.measure import summary
from tests.benchmarks.services import (
    MODEL_25,
    flush_redis,
    recreate_database,
    service_env,
)
from tests.e2e.harness import start_api


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    recreate_database()
    flush_redis()
    logs = Path(tempfile.mkdtemp(prefix="auth-cost-"))
    # No provider is called: the stub URL is never dialled without a worker.
    api, base = start_api(service_env("http://127.0.0.1:9/v1"), logs)
    try:
        token = measure.register(base)
        key = measure.create_api_key(base, token)
        chats = measure.create_chats(base, token, 2 * (args.rounds + args.warmup) // 5 + 2)
        creds = {"jwt": token, "sb_key": key}
        times: dict[str, list[float]] = {
            f"{what} {name}": [] for what in ("GET /users/me", "submit") for name in creds
        }
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(args.warmup + args.rounds):
                for j, (name, cred) in enumerate(creds.items()):
                    headers = {"Authorization": f"Bearer {cred}"}
                    start = time.perf_counter()
                    http.get("/users/me", headers=headers).raise_for_status()
                    me = (time.perf_counter() - start) * 1000
                    chat = chats[2 * (i // 5) + j]  # 5-message conversations, one set each
                    start = time.perf_counter()
                    http.post(
                        f"/chats/{chat}/messages",
                        headers=headers,
                        json={"message": f"auth {i}", "provider": "openai", "model": MODEL_25},
                    ).raise_for_status()
                    submit = (time.perf_counter() - start) * 1000
                    if i >= args.warmup:
                        times[f"GET /users/me {name}"].append(me)
                        times[f"submit {name}"].append(submit)
    finally:
        api.stop()
    out = {name: summary(values) for name, values in times.items()}
    print(json.dumps(out, indent=2))
    for what in ("GET /users/me", "submit"):
        jwt, key_ = out[f"{what} jwt"], out[f"{what} sb_key"]
        print(
            f"{what}: JWT {jwt['p50']:.2f} / {jwt['p99']:.2f} ms, sb_ key {key_['p50']:.2f} / "
            f"{key_['p99']:.2f} ms (p50 / p99): the key costs +{key_['p50'] - jwt['p50']:.2f} ms"
            " p50"
        )


if __name__ == "__main__":
    main()
