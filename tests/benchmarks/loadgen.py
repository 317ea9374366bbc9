"""The concurrent load generator: asyncio + httpx.AsyncClient, run in its own process.

    python -m tests.benchmarks.loadgen SPEC.json RESULT.json

Every loop is bounded twice: by a request budget and by a deadline after which no client
starts a new request (a request in flight still finishes, under a per-request timeout).
Kinds:
- `service`: POST /chats/{id}/messages, then GET the SSE stream to `done`;
- `openai`: POST {base}/chat/completions with stream=true (the stub directly, or LiteLLM);
- `sdk_burst`: N simultaneous streams through AsyncOpenAI (the concurrency baseline).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

REQUEST_TIMEOUT = 45.0  # above the API's 30 s DB pool timeout
CHATS_PER_CLIENT_ROTATION = 10  # a new chat every 10 messages keeps histories short


async def service_request(
    client: httpx.AsyncClient, headers: dict[str, str], chat_id: str, model: str, text: str
) -> dict[str, Any]:
    start = time.perf_counter()
    response = await client.post(
        f"/chats/{chat_id}/messages",
        headers=headers,
        json={"message": text, "provider": "openai", "model": model},
    )
    submitted = time.perf_counter()
    if response.status_code != 202:
        return {"ok": False, "error": f"submit {response.status_code}"}
    stream_url = response.json()["stream_url"]
    first = None
    parts: list[str] = []
    event = ""
    async with client.stream("GET", stream_url, headers=headers) as stream:
        if stream.status_code != 200:
            return {"ok": False, "error": f"stream {stream.status_code}"}
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "token":
                    if first is None:
                        first = time.perf_counter()
                    parts.append(json.loads(line[5:])["delta"])
                elif event == "reset":
                    parts.clear()
                elif event in ("done", "error"):
                    end = time.perf_counter()
                    ok = event == "done"
                    return {
                        "ok": ok,
                        "error": None if ok else line[5:200],
                        "submit_ms": (submitted - start) * 1000,
                        "ttft_ms": ((first or end) - start) * 1000,
                        "total_ms": (end - start) * 1000,
                        "text": "".join(parts),
                    }
    return {"ok": False, "error": "stream ended without done"}


async def openai_request(client: httpx.AsyncClient, model: str, text: str) -> dict[str, Any]:
    start = time.perf_counter()
    first = None
    parts: list[str] = []
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"ok": False, "error": f"status {response.status_code}"}
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                end = time.perf_counter()
                return {
                    "ok": True,
                    "error": None,
                    "ttft_ms": ((first or end) - start) * 1000,
                    "total_ms": (end - start) * 1000,
                    "text": "".join(parts),
                }
            chunk = json.loads(payload)
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(content)
    return {"ok": False, "error": "stream ended without [DONE]"}


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    clients: int = spec["clients"]
    budget = {"left": spec["max_requests"]}
    expected_tokens: int = spec["tokens"]
    from tests.stubs._faults import reply_text

    expected_text = reply_text(expected_tokens)
    limits = httpx.Limits(
        max_connections=clients * 2 + 10, max_keepalive_connections=clients * 2 + 10
    )
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    if spec["kind"] == "service":
        client = httpx.AsyncClient(
            base_url=spec["base_url"], timeout=REQUEST_TIMEOUT, limits=limits
        )
        headers = {"Authorization": f"Bearer {spec['token']}"}
    else:
        client = httpx.AsyncClient(
            base_url=spec["base_url"],
            timeout=REQUEST_TIMEOUT,
            limits=limits,
            headers={"Authorization": f"Bearer {spec['api_key']}"},
        )
        headers = {}
    start = time.perf_counter()
    deadline = start + spec["duration_s"]

    async def one_client(index: int) -> None:
        sent = 0
        chats = spec.get("chats", [[]])[index % max(1, len(spec.get("chats", [[]])))]
        while budget["left"] > 0 and time.perf_counter() < deadline:
            budget["left"] -= 1
            text = f"client {index} message {sent}"
            try:
                if spec["kind"] == "service":
                    chat = chats[(sent // CHATS_PER_CLIENT_ROTATION) % len(chats)]
                    record = await service_request(client, headers, chat, spec["model"], text)
                else:
                    record = await openai_request(client, spec["model"], text)
            except (httpx.HTTPError, ValueError) as exc:
                record = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
            sent += 1
            if record["ok"] and record.pop("text") != expected_text:
                record = {"ok": False, "error": "reply text differs from the stub's"}
            record["end"] = time.perf_counter() - start
            if record["ok"]:
                records.append(record)
            else:
                errors.append(record["error"])

    await asyncio.gather(*(one_client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    await client.aclose()
    # Rate over the steady window: from start to the last completion.
    return {
        "completed": len(records),
        "errors": len(errors),
        "error_samples": errors[:5],
        "elapsed_s": elapsed,
        "msgs_per_s": len(records) / elapsed if elapsed else 0.0,
        "tokens_per_s": len(records) * expected_tokens / elapsed if elapsed else 0.0,
        "ttft_ms": [r["ttft_ms"] for r in records],
        "total_ms": [r["total_ms"] for r in records],
        "submit_ms": [r["submit_ms"] for r in records if "submit_ms" in r],
    }


async def run_sdk_burst(spec: dict[str, Any]) -> dict[str, Any]:
    """`n` simultaneous streams through AsyncOpenAI: the stub's own time for the burst."""
    import openai

    from tests.stubs._faults import reply_text

    n: int = spec["n"]
    expected = reply_text(spec["tokens"])
    # The SDK's default pool allows 1000 connections: enough for the burst.
    kwargs: dict[str, Any] = {
        "api_key": spec["api_key"],
        "base_url": spec["base_url"],
        "max_retries": 0,
        "timeout": REQUEST_TIMEOUT,
    }
    client = openai.AsyncOpenAI(**kwargs)
    ok = 0
    errors: list[str] = []

    async def one(i: int) -> None:
        nonlocal ok
        try:
            stream = await client.chat.completions.create(
                model=spec["model"],
                stream=True,
                messages=[{"role": "user", "content": f"burst {i}"}],
            )
            parts = []
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
            if "".join(parts) == expected:
                ok += 1
            else:
                errors.append("text differs")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    await client.close()
    return {"wall_s": wall, "ok": ok, "errors": len(errors), "error_samples": errors[:5]}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    runner = run_sdk_burst if spec["kind"] == "sdk_burst" else run_load
    result = asyncio.run(runner(spec))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
