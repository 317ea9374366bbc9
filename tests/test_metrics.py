"""The metric helpers on their own: queue depth against real Redis, and what fails soft."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from shared import metrics
from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import free_port


def _registry_with(queues: list[str], client: redis.Redis) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics.register_queue_depth(lambda: queues, lambda: client, registry)
    return registry


def test_queue_depth_counts_every_priority_list_of_a_queue():
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.rpush(queue, "a", "b")
        client.rpush(f"{queue}\x06\x163", "c")  # kombu's list for priority 3
        registry = _registry_with([queue, "metrics-test-empty"], client)
        assert registry.get_sample_value("switchboard_queue_depth", {"queue": queue}) == 3
        empty = {"queue": "metrics-test-empty"}
        assert registry.get_sample_value("switchboard_queue_depth", empty) == 0
        assert registry.get_sample_value("switchboard_broker_up") == 1
    finally:
        client.delete(queue, f"{queue}\x06\x163")
        client.close()


def test_a_scrape_with_the_broker_away_reports_it_down_instead_of_failing():
    away = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    registry = _registry_with(["echo"], away)
    body = generate_latest(registry).decode()
    assert "switchboard_broker_up 0.0" in body
    assert "switchboard_queue_depth{" not in body


def test_a_worker_whose_metrics_port_is_taken_keeps_running(caplog: pytest.LogCaptureFixture):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert metrics.serve_worker_metrics("127.0.0.1", port) is False
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text


def test_models_beyond_the_label_cap_are_counted_as_other(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics, "_models_seen", set())
    monkeypatch.setattr(metrics, "MAX_MODEL_LABELS", 2)
    assert metrics.model_label("p", "a") == "a"
    assert metrics.model_label("p", "b") == "b"
    assert metrics.model_label("p", "c") == metrics.OTHER_MODEL
    assert metrics.model_label("p", "a") == "a"  # a model already labelled stays itself
