"""Fallback within one reply, through the real API, worker, Redis, PostgreSQL and stubs.

A chat's routing option names its fallbacks (an admin's chain works the same way, see
tests/api/test_admin_routing.py). The failing target is the OpenAI stub, the fallback the
Anthropic stub: which one produced the stored text is never in doubt.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Message, PoolDeployment, ProviderUsage
from shared.providers.base import estimate_tokens
from shared.providers.directory import bump_version, lock_catalog, provider_directory
from shared.settings import get_settings
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import Process, SSEResult, read_sse_within, start_worker, wait_until
from tests.helpers import register_and_login
from tests.stubs import reply_text
from workers.celery_app import enqueue_generation

FALLBACK = {"provider": "anthropic", "model": "stub-model+tokens=8"}
FALLBACK_TEXT = reply_text(8)
FIRST_THREE = reply_text(3)  # what the faulting stubs send before they fail
FINAL = ("completed", "failed", "cancelled")


def _send(
    http: httpx.Client,
    provider: str,
    model: str,
    fallbacks: list[dict[str, str]],
    *,
    headers: dict[str, str] | None = None,
    message: str = "hi",
    stop: list[str] | None = None,
    **routing: object,
) -> tuple[dict[str, str], str]:
    headers = headers or register_and_login(http)
    chat = http.post(
        "/chats",
        json={
            "provider": provider,
            "model": model,
            "routing": {"fallbacks": fallbacks, **routing} if fallbacks else routing,
        },
        headers=headers,
    )
    assert chat.status_code == 201, chat.text
    body: dict[str, object] = {"message": message} | ({"stop": stop} if stop else {})
    accepted = http.post(f"/chats/{chat.json()['id']}/messages", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return headers, accepted.json()["reply_id"]


def _stream(http: httpx.Client, headers: dict[str, str], reply_id: str) -> SSEResult:
    return read_sse_within(http, f"/messages/{reply_id}/stream", headers, 40)


def _usage_rows(reply_id: str) -> list[ProviderUsage]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ProviderUsage)
                .where(ProviderUsage.message_id == uuid.UUID(reply_id))
                .order_by(ProviderUsage.route_step)
            )
        )


def _events(result: SSEResult) -> list[str]:
    return [event.event for event in result.events]


def test_the_fallback_gets_the_stop_sequences_too(http, worker):
    headers, reply_id = _send(http, "openai", "fault-500", [FALLBACK], stop=[" tok4"])
    assert _stream(http, headers, reply_id).text == reply_text(4)
    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert [(a["provider"], a["status"]) for a in reply["attempts"]] == [
        ("openai", "failed"),
        ("anthropic", "completed"),
    ]
    assert (reply["finish_reason"], reply["usage"]["completion_tokens"]) == ("stop_sequence", 4)


def test_a_failure_before_the_first_token_is_invisible_to_the_reader(http, worker):
    headers, reply_id = _send(http, "openai", "fault-500", [FALLBACK])
    result = _stream(http, headers, reply_id)

    assert "restart" not in _events(result) and "reset" not in _events(result)
    assert _events(result)[-1] == "done"
    assert result.text == FALLBACK_TEXT
    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert reply["status"] == "completed" and reply["content"] == FALLBACK_TEXT
    assert (reply["provider"], reply["model"]) == (FALLBACK["provider"], FALLBACK["model"])
    attempts = reply["attempts"]
    assert [(a["provider"], a["status"]) for a in attempts] == [
        ("openai", "failed"),
        ("anthropic", "completed"),
    ]
    assert "500" in attempts[0]["error"] or "unavailable" in attempts[0]["error"].lower()
    assert attempts[0]["completion_tokens"] is None  # nothing was received: nothing billed
    assert reply["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize("fault", ["fault-cut", "fault-malformed"])
def test_a_failure_after_three_tokens_restarts_on_the_fallback(http, worker, fault):
    headers, reply_id = _send(http, "openai", fault, [FALLBACK])
    result = _stream(http, headers, reply_id)

    events = _events(result)
    restart_at = events.index("restart")
    before = "".join(e.data["delta"] for e in result.events[:restart_at] if e.event == "token")
    assert before == FIRST_THREE  # the reader saw the failed attempt's tokens, then...
    restart = result.events[restart_at].data
    assert (restart["provider"], restart["model"]) == (FALLBACK["provider"], FALLBACK["model"])
    assert restart["reason"].startswith("openai:")
    assert events.count("restart") == 1 and events[-1] == "done" and "error" not in events
    assert result.text == FALLBACK_TEXT  # ...dropped them: only the fallback's text is left

    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert reply["content"] == FALLBACK_TEXT and reply["status"] == "completed"
    failed, answered = _usage_rows(reply_id)
    assert (failed.provider_name, failed.status, failed.route_step) == ("openai", "failed", 0)
    # The failed attempt is billed for what it consumed: three tokens' worth, estimated.
    assert failed.completion_tokens == estimate_tokens(FIRST_THREE)
    assert failed.completion_tokens_estimated and failed.error
    assert (answered.provider_name, answered.status, answered.route_step) == (
        "anthropic",
        "completed",
        1,
    )
    assert answered.completion_tokens == 8 and not answered.completion_tokens_estimated


def test_an_exhausted_route_ends_with_one_error_and_a_failed_reply(http, worker):
    headers, reply_id = _send(
        http, "openai", "fault-cut", [{"provider": "anthropic", "model": "fault-cut"}]
    )
    result = _stream(http, headers, reply_id)

    events = _events(result)
    assert events.count("error") == 1 and events[-1] == "error" and "done" not in events
    assert events.count("restart") == 1  # tokens of the first, then of the second target
    error = result.last.data["error"]
    assert error.startswith("No target of the route is left") and "anthropic:" in error
    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert reply["status"] == "failed" and reply["error"] == error
    assert [(a["provider"], a["status"]) for a in reply["attempts"]] == [
        ("openai", "failed"),
        ("anthropic", "failed"),
    ]
    assert len(_usage_rows(reply_id)) == 2


def test_a_redelivered_job_during_a_fallback_starts_no_second_generation(http, worker):
    slow = {"provider": "anthropic", "model": "stub-model+tokens=40+delay=50"}
    headers, reply_id = _send(http, "openai", "fault-cut", [slow])

    def on_fallback() -> bool:
        with session_scope() as session:
            row = session.get(Message, uuid.UUID(reply_id))
            return row is not None and row.route_step == 1 and row.status == "running"

    wait_until(on_fallback, 30, worker, interval=0.05)
    # The first target's job comes again (a redelivery), and a copy with no step (the
    # sweeper's resend), while the fallback is generating.
    enqueue_generation(uuid.UUID(reply_id), "openai", 0)
    enqueue_generation(uuid.UUID(reply_id), "anthropic")
    result = _stream(http, headers, reply_id)

    events = _events(result)
    assert events.count("restart") == 1 and "reset" not in events and events[-1] == "done"
    assert result.text == reply_text(40)
    rows = _usage_rows(reply_id)
    assert [(r.provider_name, r.status) for r in rows] == [
        ("openai", "failed"),
        ("anthropic", "completed"),
    ]
    with session_scope() as session:
        row = session.get(Message, uuid.UUID(reply_id))
        assert row is not None and row.attempts == 1  # the fallback's step ran once


def test_the_response_cache_answers_a_repeat_and_bills_nothing(http, worker):
    headers, first = _send(http, "openai", "stub-model+tokens=8", [], cache=True, message="q?")
    miss = _stream(http, headers, first)
    assert miss.text == reply_text(8)
    _, second = _send(
        http, "openai", "stub-model+tokens=8", [], cache=True, message="q?", headers=headers
    )
    hit = _stream(http, headers, second)
    assert hit.text == reply_text(8) and _events(hit)[-1] == "done"
    assert _events(hit).count("token") >= 1

    missed = http.get(f"/messages/{first}", headers=headers).json()
    cached = http.get(f"/messages/{second}", headers=headers).json()
    assert missed["cached"] is False and missed["usage"]["completion_tokens"] == 8
    assert cached["cached"] is True and cached["content"] == reply_text(8)
    assert cached["usage"]["prompt_tokens"] == 0 and cached["usage"]["completion_tokens"] == 0
    assert float(cached["cost"]) == 0
    (row,) = _usage_rows(second)
    assert row.cached and row.cost == 0

    # Another question is a miss.
    _, third = _send(
        http, "openai", "stub-model+tokens=8", [], cache=True, message="other?", headers=headers
    )
    _stream(http, headers, third)
    assert http.get(f"/messages/{third}", headers=headers).json()["cached"] is False


@pytest.fixture
def stall_worker(service_env: dict[str, str], log_dir) -> Iterator[Process]:
    """A worker for the ollama queue that gives up on a silent stream after 1.5 s."""
    env = {**service_env, "STREAM_STALL_SECONDS": "1.5", "PROVIDER_TIMEOUT_SECONDS": "60"}
    process = start_worker(env, log_dir, ["ollama"])
    yield process
    process.stop()


@pytest.mark.parametrize(("fault", "tokens_first"), [("fault-stall", True), ("fault-hang", False)])
def test_a_stalled_stream_falls_back(http, stall_worker, fault, tokens_first):
    target = {"provider": "ollama", "model": "stub-model+tokens=8"}
    headers, reply_id = _send(http, "ollama", fault, [target])
    result = _stream(http, headers, reply_id)

    events = _events(result)
    assert events[-1] == "done" and result.text == FALLBACK_TEXT
    assert ("restart" in events) is tokens_first
    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    failed = reply["attempts"][0]
    assert failed["status"] == "failed" and "stalled" in failed["error"]
    wait_until(lambda: reply["status"] in FINAL, 5, stall_worker)


def set_pool(name: str, deployments: list[tuple[str, str, int]]) -> None:
    """As the admin API writes it: under the catalog lock, then a change notice."""
    settings = get_settings()
    with session_scope() as session:
        bump_version(session, lock_catalog(session))
        for provider, model, weight in deployments:
            session.add(
                PoolDeployment(
                    pool_name=name, provider_name=provider, model_name=model, weight=weight
                )
            )
    provider_directory.publish_change(settings)


def test_a_pool_cools_a_failing_deployment_down_and_tries_it_again_after(http, worker):
    failing = ("openai", "fault-500")
    set_pool("balanced", [(*failing, 1000), (FALLBACK["provider"], FALLBACK["model"], 1)])
    headers = register_and_login(http)

    def pool_loaded() -> bool:
        answer = http.post("/chats", json={"model": "pool:balanced"}, headers=headers)
        return answer.status_code == 201

    wait_until(pool_loaded, 15, worker, interval=0.2)
    attempts: list[list[str]] = []
    for _ in range(5):
        _, reply_id = _send(http, "openai", "pool:balanced", [], headers=headers)
        assert _stream(http, headers, reply_id).text == FALLBACK_TEXT
        reply = http.get(f"/messages/{reply_id}", headers=headers).json()
        assert reply["route"]["requested"] == "pool:balanced"
        attempts.append([a["provider"] for a in reply["attempts"]])

    # TARGET_FAILURE_THRESHOLD (3) failures cool the failing deployment down: the replies
    # after them go straight to the healthy one.
    assert sum(a.count("openai") for a in attempts) == 3
    assert attempts[-1] == ["anthropic"]
    cooldown = f"sb:health:{failing[0]}:{failing[1]}:cooldown"
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        assert client.exists(cooldown)
        # Recovery: once the cooldown (TARGET_COOLDOWN_SECONDS, 3 s here) has passed, the
        # heavy deployment is tried first again.
        wait_until(lambda: not client.exists(cooldown), 10, worker, interval=0.2)
    finally:
        client.close()
    _, reply_id = _send(http, "openai", "pool:balanced", [], headers=headers)
    _stream(http, headers, reply_id)
    reply = http.get(f"/messages/{reply_id}", headers=headers).json()
    assert [a["provider"] for a in reply["attempts"]] == ["openai", "anthropic"]
