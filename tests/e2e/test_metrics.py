"""Prometheus metrics from the real API (admins only) and from a real gevent worker's port.

The worker tests start their own worker on the `ollama` queue, which the shared session
worker leaves alone, so every generation it counts is one of these tests'. The queue-depth
test runs first in this module, while nothing consumes `ollama` yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from shared.db import session_scope
from shared.models import Message, ProviderUsage
from shared.models.base import utcnow
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import Process, free_port, read_sse, start_worker, wait_until
from tests.helpers import add_queued_reply, add_user_and_chat, register_and_login

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not created yet (counters start at 0)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def admin_headers(http: httpx.Client) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    headers = register_and_login(http, email)
    with session_scope() as session:
        session.execute(
            text("UPDATE users SET is_admin = true WHERE email = :email"), {"email": email}
        )
    return headers


def scrape_api(http: httpx.Client, headers: dict[str, str]) -> Samples:
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_metrics_are_for_admins_only(http):
    anonymous = http.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

    user = register_and_login(http)
    refused = http.get("/metrics", headers=user)
    assert refused.status_code == 403
    assert "switchboard_" not in refused.text

    admin = admin_headers(http)
    scrape_api(http, admin)
    # What a Prometheus server is given: an admin's API key, which does not expire.
    key = http.post("/auth/api-keys", json={"name": "prometheus"}, headers=admin).json()["key"]
    scrape_api(http, {"Authorization": f"Bearer {key}"})


def test_admin_scrape_shows_queue_depth_and_request_counts(http):
    admin = admin_headers(http)
    user = register_and_login(http)
    chat = http.post(
        "/chats", json={"provider": "ollama", "model": "stub-model"}, headers=user
    ).json()
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        before = scrape_api(http, admin)
        accepted = http.post(
            f"/chats/{chat['id']}/messages", json={"message": "wait in line"}, headers=user
        )
        assert accepted.status_code == 202
        assert http.get("/no/such/path").status_code == 404

        response = http.get("/metrics", headers=admin)
        after = parse(response.text)
    finally:
        broker.delete("ollama")  # no later worker should find this test's job
        broker.close()

    # Every provider queue the API declares, with what waits in it.
    assert value(after, "switchboard_queue_depth", queue="ollama") == 1
    for queue in ("echo", "openai", "anthropic"):
        assert ("switchboard_queue_depth", frozenset({("queue", queue)})) in after
    assert value(after, "switchboard_broker_up") == 1

    # Requests are counted by route template: no chat ids, and one label for unknown paths.
    submitted = {"method": "POST", "route": "/chats/{chat_id}/messages", "status": "202"}
    assert value(after, "switchboard_http_requests_total", **submitted) == (
        value(before, "switchboard_http_requests_total", **submitted) + 1
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "switchboard_http_requests_total", **unmatched) >= 1
    timed = {"method": "POST", "route": "/chats/{chat_id}/messages"}
    assert value(after, "switchboard_http_request_duration_seconds_count", **timed) >= 1
    assert chat["id"] not in response.text
    assert accepted.json()["reply_id"] not in response.text


@pytest.fixture(scope="module")
def metrics_worker(service_env: dict[str, str], log_dir: Path) -> Iterator[tuple[Process, str]]:
    port = free_port()
    env = {**service_env, "WORKER_METRICS_PORT": str(port)}
    process = start_worker(env, log_dir, ["ollama"])
    yield process, f"http://127.0.0.1:{port}/metrics"
    process.stop()


def scrape_worker(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def _ask(http: httpx.Client, headers: dict[str, str], model: str, question: str) -> dict:
    chat = http.post("/chats", json={"provider": "ollama", "model": model}, headers=headers).json()
    accepted = http.post(
        f"/chats/{chat['id']}/messages", json={"message": question}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    return accepted.json()


def _usage_of(reply_id: str) -> ProviderUsage:
    with session_scope() as session:
        row = session.query(ProviderUsage).filter_by(message_id=uuid.UUID(reply_id)).one()
        session.expunge(row)
        return row


def test_worker_port_serves_generation_metrics(http, metrics_worker):
    worker, url = metrics_worker
    headers = register_and_login(http)
    before = scrape_worker(url)
    ollama = {"provider": "ollama", "model": "stub-model"}

    accepted = _ask(http, headers, "stub-model", "count me")
    assert read_sse(http, accepted["stream_url"], headers).last.event == "done"
    wait_until(lambda: _stored(accepted["reply_id"]), 10, worker)
    usage = _usage_of(accepted["reply_id"])
    after = scrape_worker(url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("switchboard_generations_total", **ollama, outcome="completed") == 1
    assert usage.prompt_tokens and usage.completion_tokens
    assert delta("switchboard_prompt_tokens_total", **ollama) == usage.prompt_tokens
    assert delta("switchboard_completion_tokens_total", **ollama) == usage.completion_tokens
    # Ollama is priced at zero: the series exists and adds exactly the stored cost.
    assert ("switchboard_cost_usd_total", frozenset(ollama.items())) in after
    assert delta("switchboard_cost_usd_total", **ollama) == float(usage.cost)
    assert delta("switchboard_generation_duration_seconds_count", provider="ollama") == 1
    assert delta("switchboard_time_to_first_token_seconds_count", provider="ollama") == 1
    assert value(after, "switchboard_generations_in_flight", provider="ollama") == 0
    assert value(after, "switchboard_queue_depth", queue="ollama") == 0

    refused = _ask(http, headers, "fault-401", "no key")
    assert read_sse(http, refused["stream_url"], headers).last.event == "error"
    wait_until(lambda: _stored(refused["reply_id"]), 10, worker)
    failed = scrape_worker(url)
    assert (
        value(
            failed,
            "switchboard_generations_total",
            provider="ollama",
            model="fault-401",
            outcome="failed",
        )
        == 1
    )
    errors = {"provider": "ollama", "kind": "authentication"}
    assert value(failed, "switchboard_provider_errors_total", **errors) == (
        value(before, "switchboard_provider_errors_total", **errors) + 1
    )
    assert str(accepted["reply_id"]) not in httpx.get(url).text


def _stored(reply_id: str) -> bool:
    with session_scope() as session:
        return session.query(ProviderUsage).filter_by(message_id=uuid.UUID(reply_id)).count() == 1


def test_worker_counts_requeued_and_redelivered_jobs(http, metrics_worker):
    """A job the broker lost (its reply queued long ago, no marker): the sweeper sends it
    again, and its delivery is the reply's second attempt."""
    worker, url = metrics_worker
    before = scrape_worker(url)
    with session_scope() as session:
        chat = add_user_and_chat(session, provider="ollama", model="stub-model")
        reply_id = add_queued_reply(session, chat, created_at=utcnow() - timedelta(minutes=5))
        session.execute(update(Message).where(Message.id == reply_id).values(attempts=1))

    wait_until(lambda: _stored(str(reply_id)), 30, worker, interval=0.2)
    after = scrape_worker(url)
    for reason in ("requeued_lost", "delivered_again"):
        labels = {"provider": "ollama", "reason": reason}
        assert value(after, "switchboard_redeliveries_total", **labels) == (
            value(before, "switchboard_redeliveries_total", **labels) + 1
        ), reason
