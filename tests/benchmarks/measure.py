"""Sequential measurements (scenarios 1 and 2) and the helpers the bursts need.

Sequential: one request at a time, rotating direct SDK -> service -> LiteLLM for each index,
so the three series see the same machine state.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.services import pg_connect


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else None,
    }


# -- one sequential request of each kind -------------------------------------------------


def direct_once(client: Any, model: str, text: str) -> dict[str, Any]:
    """The `openai` SDK (sync, client built once) against the stub, LiteLLM or Switchboard's
    /v1 (whose chunk ids name the reply: `chatcmpl-<reply id hex>`, for the breakdown)."""
    t0_wall = time.time()
    start = time.perf_counter()
    first = first_wall = None
    chunk_id = None
    parts = []
    stream = client.chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": text}]
    )
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                if first is None:
                    first, first_wall = time.perf_counter(), time.time()
                    chunk_id = chunk.id
                parts.append(choice.delta.content)
    end = time.perf_counter()
    reply_id = None
    if chunk_id and chunk_id.startswith("chatcmpl-"):
        with suppress(ValueError):  # the stub's or LiteLLM's own ids are not reply ids
            reply_id = str(uuid.UUID(hex=chunk_id.removeprefix("chatcmpl-")))
    return {
        "ttft_ms": ((first or end) - start) * 1000,
        "total_ms": (end - start) * 1000,
        "text": "".join(parts),
        "reply_id": reply_id,
        "t0_wall": t0_wall,
        "first_wall": first_wall,
        "first_id": None,  # OpenAI chunks carry no Redis entry id
    }


@dataclass
class ReplyRead:
    """What a client read of a reply's SSE stream: when its first token came, and the text."""

    first: float | None = None  # perf_counter
    first_wall: float | None = None
    first_id: str | None = None
    parts: list[str] = field(default_factory=list)
    end: str = ""  # "done" or "error" once the stream ended with one

    @property
    def text(self) -> str:
        return "".join(self.parts)


def read_reply_events(stream: httpx.Response) -> ReplyRead:
    """Read a reply's SSE stream to its end event, timing the first `token`."""
    read = ReplyRead()
    event, event_id = "", None
    for line in stream.iter_lines():
        if line == "":
            event, event_id = "", None
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            if event == "token":
                if read.first is None:
                    read.first, read.first_wall = time.perf_counter(), time.time()
                    read.first_id = event_id
                read.parts.append(json.loads(line[5:])["delta"])
            elif event in ("done", "error"):
                read.end = event
                break
    return read


def service_once(
    http: httpx.Client, headers: dict[str, str], chat_id: str, model: str, text: str
) -> dict[str, Any]:
    """Submit, then read the SSE stream to `done`; wall clocks kept for the breakdown."""
    t0_wall = time.time()
    start = time.perf_counter()
    response = http.post(
        f"/chats/{chat_id}/messages",
        headers=headers,
        json={"message": text, "provider": "openai", "model": model},
    )
    submitted = time.perf_counter()
    response.raise_for_status()
    body = response.json()
    with http.stream("GET", body["stream_url"], headers=headers) as stream:
        read = read_reply_events(stream)
    end = time.perf_counter()
    return {
        "reply_id": body["reply_id"],
        "ok": read.end == "done",
        "t0_wall": t0_wall,
        "submit_ms": (submitted - start) * 1000,
        "ttft_ms": ((read.first or end) - start) * 1000,
        "total_ms": (end - start) * 1000,
        "first_wall": read.first_wall,
        "first_id": read.first_id,
        "text": read.text,
    }


def one_request_once(
    http: httpx.Client, headers: dict[str, str], chat_id: str, model: str, text: str
) -> dict[str, Any]:
    """The native one-request path: POST with `Accept: text/event-stream`, the reply's SSE
    stream in the answer; time to the first `token` event (httpx streaming)."""
    t0_wall = time.time()
    start = time.perf_counter()
    with http.stream(
        "POST",
        f"/chats/{chat_id}/messages",
        headers=headers | {"Accept": "text/event-stream"},
        json={"message": text, "provider": "openai", "model": model},
    ) as stream:
        answered = time.perf_counter()  # status and headers in: the submit is done
        stream.raise_for_status()
        reply_id = stream.headers.get("x-switchboard-reply-id")
        read = read_reply_events(stream)
    end = time.perf_counter()
    return {
        "reply_id": reply_id,
        "ok": read.end == "done",
        "t0_wall": t0_wall,
        "submit_ms": (answered - start) * 1000,
        "ttft_ms": ((read.first or end) - start) * 1000,
        "total_ms": (end - start) * 1000,
        "first_wall": read.first_wall,
        "first_id": read.first_id,
        "text": read.text,
    }


def breakdown(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Where the service's TTFT goes, from client clocks, DB timestamps and Redis entry ids.

    All clocks are this machine's wall clock; Redis stream ids are milliseconds, so the
    pieces that use them carry +-1 ms of resolution.
    """
    ids = [s["reply_id"] for s in samples]
    with closing(pg_connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT m.id::text, extract(epoch from m.created_at), extract(epoch from m.started_at),"
            " u.time_to_first_token_ms FROM messages m LEFT JOIN provider_usage u"
            " ON u.message_id = m.id WHERE m.id::text = ANY(%s)",
            (ids,),
        )
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    pieces: dict[str, list[float]] = {
        k: []
        for k in (
            "submit_rtt",
            "client_to_row",
            "row_to_claim",
            "claim_to_first_publish",
            "provider_ttft",
            "publish_to_client",
            "claim_to_client",
        )
    }
    for s in samples:
        row = rows.get(s["reply_id"])
        if row is None or row[1] is None or s["first_wall"] is None:
            continue
        created, started, ttft = float(row[0]), float(row[1]), row[2]
        if "submit_ms" in s:
            pieces["submit_rtt"].append(s["submit_ms"])
        pieces["client_to_row"].append((created - s["t0_wall"]) * 1000)
        pieces["row_to_claim"].append((started - created) * 1000)
        pieces["claim_to_client"].append((s["first_wall"] - started) * 1000)
        if ttft is not None:
            pieces["provider_ttft"].append(float(ttft))
        if s["first_id"] is not None:  # the Redis entry id: when the worker published
            published = int(s["first_id"].split("-")[0]) / 1000
            pieces["claim_to_first_publish"].append((published - started) * 1000)
            pieces["publish_to_client"].append((s["first_wall"] - published) * 1000)
    return {k: summary(v) for k, v in pieces.items()}


# -- service setup over HTTP -----------------------------------------------------------------


def register(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        email, password = f"bench-{time.time_ns()}@example.com", "bench-password-123"
        http.post("/auth/register", json={"email": email, "password": password}).raise_for_status()
        response = http.post("/auth/token", data={"username": email, "password": password})
        response.raise_for_status()
        return str(response.json()["access_token"])


def create_api_key(base_url: str, token: str) -> str:
    """An `sb_` API key (POST /auth/api-keys): what the compatible APIs' clients send."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        response = http.post(
            "/auth/api-keys",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "bench"},
        )
        response.raise_for_status()
        return str(response.json()["key"])


def openai_compat_available(base_url: str, api_key: str) -> tuple[bool, str]:
    """Whether this checkout serves /v1/chat/completions (GET /v1/models answers)."""
    try:
        response = httpx.get(
            base_url + "/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        return False, f"GET /v1/models failed: {exc}"
    if response.status_code != 200:
        return False, f"GET /v1/models answered {response.status_code}: {response.text[:200]}"
    return True, ""


async def _create_chats(base_url: str, token: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(20)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def one(i: int) -> str:
            async with sem:
                r = await http.post(
                    "/chats",
                    headers=headers,
                    json={
                        "title": f"bench {i}",
                        "provider": "openai",
                        "model": "stub-model+tokens=25",
                    },
                )
                r.raise_for_status()
                return str(r.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def create_chats(base_url: str, token: str, n: int) -> list[str]:
    return asyncio.run(_create_chats(base_url, token, n))


async def _submit_many(
    base_url: str, token: str, chats: list[str], model: str, n: int
) -> tuple[list[str], float, float]:
    headers = {"Authorization": f"Bearer {token}"}
    # 20 at a time: more concurrent requests than the API's DB pool (30) stall it (see
    # docs/benchmarks.md), and submission is not what scenarios 4 and 5 measure.
    sem = asyncio.Semaphore(20)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=30)
    ) as http:

        async def one(i: int) -> str:
            async with sem:
                r = await http.post(
                    f"/chats/{chats[i % len(chats)]}/messages",
                    headers=headers,
                    json={"message": f"burst {i}", "provider": "openai", "model": model},
                )
                r.raise_for_status()
                return str(r.json()["reply_id"])

        t0 = time.time()
        ids = list(await asyncio.gather(*(one(i) for i in range(n))))
        return ids, t0, time.time()


def submit_many(
    base_url: str, token: str, chats: list[str], model: str, n: int
) -> tuple[list[str], float, float]:
    """Submit n messages, 20 at a time; returns reply ids and the wall clock span."""
    return asyncio.run(_submit_many(base_url, token, chats, model, n))


def stored_api_replies(since: float, timeout: float = 10) -> list[dict[str, Any]]:
    """The replies of `api` chats created after `since` (wall clock), once all are final:
    status, content and how many usage rows each has."""
    deadline = time.monotonic() + timeout
    with closing(pg_connect()) as conn, conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT m.id::text, m.status, m.content,"
                " (SELECT count(*) FROM provider_usage u WHERE u.message_id = m.id)"
                " FROM messages m JOIN chats c ON c.id = m.chat_id"
                " WHERE c.kind = 'api' AND m.role = 'assistant'"
                " AND m.created_at >= to_timestamp(%s) ORDER BY m.created_at",
                (since,),
            )
            rows = [
                {"id": r[0], "status": r[1], "content": r[2], "usage_rows": r[3]}
                for r in cur.fetchall()
            ]
            final = all(r["status"] in ("completed", "failed", "cancelled") for r in rows)
            if (rows and final) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def wait_final(ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with closing(pg_connect()) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM messages WHERE id::text = ANY(%s) AND status IN"
                " ('completed', 'failed', 'cancelled')",
                (ids,),
            )
            if cur.fetchone()[0] == len(ids):
                return True
            time.sleep(0.1)
    return False


def burst_outcome(ids: list[str], expected_text: str, expected_tokens: int) -> dict[str, Any]:
    """Wall clock of the burst from the DB, and the lost/duplicated check."""
    with closing(pg_connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT m.id::text, m.status, m.content, m.attempts,"
            " extract(epoch from m.created_at), extract(epoch from m.started_at),"
            " extract(epoch from m.completed_at),"
            " (SELECT count(*) FROM provider_usage u WHERE u.message_id = m.id),"
            " (SELECT max(u.completion_tokens) FROM provider_usage u WHERE u.message_id = m.id)"
            " FROM messages m WHERE m.id::text = ANY(%s)",
            (ids,),
        )
        rows = cur.fetchall()
    completed = [r for r in rows if r[1] == "completed"]
    exact = [r for r in completed if r[2] == expected_text and r[8] == expected_tokens]
    started = [float(r[5]) for r in rows if r[5] is not None]
    done = [float(r[6]) for r in rows if r[6] is not None]
    created = [float(r[4]) for r in rows]
    return {
        "n": len(ids),
        "rows": len(rows),
        "completed": len(completed),
        "content_exact": len(exact),
        "lost": len(ids) - len(completed),
        "usage_rows_not_one": sum(1 for r in rows if r[7] != 1),
        "redelivered": sum(1 for r in rows if (r[3] or 0) > 1),
        "wall_from_first_claim_s": (max(done) - min(started)) if done and started else None,
        "wall_from_first_insert_s": (max(done) - min(created)) if done and created else None,
        "first_done_s": (min(done) - min(started)) if done and started else None,
        "claim_spread_s": (max(started) - min(started)) if started else None,
        "first_claim_wall": min(started) if started else None,
    }


# -- the load generator process --------------------------------------------------------------


def run_loadgen(spec: dict[str, Any], work_dir: Path, timeout: float) -> dict[str, Any]:
    stamp = time.monotonic_ns()
    spec_path = work_dir / f"load-{stamp}.json"
    out_path = work_dir / f"load-{stamp}.out.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.loadgen", str(spec_path), str(out_path)],
        capture_output=True,
        timeout=timeout,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr[-3000:]}")
    return json.loads(out_path.read_text())
