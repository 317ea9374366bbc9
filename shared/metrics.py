"""Prometheus metrics shared by the API and the workers (docs/admin.md lists them).

Recording is a counter or histogram update in process memory: nothing here does I/O on the
hot path. The only I/O is the queue-depth collector, which asks the broker's Redis for each
queue's length when Prometheus scrapes, never when a job runs.

Labels stay bounded: provider names and models come from the deployment's configuration,
outcomes and error kinds from fixed sets; never a user, chat or reply id. Models are capped
per process anyway (MAX_MODEL_LABELS), in case a provider accepts any model name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    import redis

    from shared.providers.base import Usage

log = logging.getLogger(__name__)

PREFIX = "switchboard"
MAX_MODEL_LABELS = 500
OTHER_MODEL = "other"
# kombu's Redis transport keeps a queue's prioritised messages in sibling lists.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
QUEUE_DEPTH_TIMEOUT_SECONDS = 2.0

# Generations: a reply's stream runs from a few hundred milliseconds to the soft time limit.
GENERATION_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
FIRST_TOKEN_SECONDS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

GENERATIONS = Counter(
    f"{PREFIX}_generations",
    "Generations whose outcome was stored, by provider, model and outcome "
    "(completed, failed, cancelled).",
    ["provider", "model", "outcome"],
)
PROMPT_TOKENS = Counter(
    f"{PREFIX}_prompt_tokens",
    "Prompt tokens of stored generations (the usage rows' prompt_tokens).",
    ["provider", "model"],
)
COMPLETION_TOKENS = Counter(
    f"{PREFIX}_completion_tokens",
    "Completion tokens of stored generations (the usage rows' completion_tokens).",
    ["provider", "model"],
)
COST = Counter(
    f"{PREFIX}_cost_usd",
    "Cost in USD of stored generations, for models with a price.",
    ["provider", "model"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    f"{PREFIX}_time_to_first_token_seconds",
    "From the start of a generation to its first text token.",
    ["provider"],
    buckets=FIRST_TOKEN_SECONDS_BUCKETS,
)
GENERATION_DURATION = Histogram(
    f"{PREFIX}_generation_duration_seconds",
    "From the start of a generation to its end, whatever the outcome.",
    ["provider"],
    buckets=GENERATION_SECONDS_BUCKETS,
)
GENERATIONS_IN_FLIGHT = Gauge(
    f"{PREFIX}_generations_in_flight",
    "Generations streaming from their provider in this worker right now.",
    ["provider"],
)
PROVIDER_ERRORS = Counter(
    f"{PREFIX}_provider_errors",
    "Provider calls that failed, by the error's kind (shared/providers/errors.py).",
    ["provider", "kind"],
)
REDELIVERIES = Counter(
    f"{PREFIX}_redeliveries",
    "Jobs sent again: requeued_lost (the sweeper re-sent a job the broker lost) and "
    "delivered_again (a delivery with attempt > 1, after a worker died mid-job).",
    ["provider", "reason"],
)
FALLBACKS = Counter(
    f"{PREFIX}_fallbacks",
    "Replies moved from a failed target to the next of their route (docs/providers/routing.md), "
    "by the provider that failed and the one tried next; restarted: tokens had been sent.",
    ["from_provider", "to_provider", "restarted"],
)
CACHE_HITS = Counter(
    f"{PREFIX}_response_cache_hits",
    "Replies served from the response cache, by provider and model.",
    ["provider", "model"],
)
HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "API requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "From a request's arrival to its response headers (for a stream: until it opens).",
    ["method", "route"],
    buckets=HTTP_SECONDS_BUCKETS,
)

_models_seen: set[tuple[str, str]] = set()
_models_lock = threading.Lock()


def model_label(provider: str, model: str) -> str:
    """The model itself, or "other" once this process has seen MAX_MODEL_LABELS of them."""
    key = (provider, model)
    if key in _models_seen:
        return model
    with _models_lock:
        if len(_models_seen) >= MAX_MODEL_LABELS:
            return OTHER_MODEL
        _models_seen.add(key)
    return model


def record_generation(
    provider: str,
    model: str,
    outcome: str,
    usage: Usage | None,
    cost: Decimal | None,
    ttft_ms: int | None,
    elapsed_ms: int,
) -> None:
    """One stored generation, as its usage row records it."""
    try:
        model = model_label(provider, model)
        GENERATIONS.labels(provider, model, outcome).inc()
        if usage is not None:
            PROMPT_TOKENS.labels(provider, model).inc(usage.prompt_tokens)
            COMPLETION_TOKENS.labels(provider, model).inc(usage.completion_tokens)
        if cost is not None:
            COST.labels(provider, model).inc(float(cost))
        if ttft_ms is not None:
            TIME_TO_FIRST_TOKEN.labels(provider).observe(ttft_ms / 1000)
        GENERATION_DURATION.labels(provider).observe(elapsed_ms / 1000)
    except Exception as exc:  # a metric must never fail a stored reply
        log.warning("could not record generation metrics: %s", type(exc).__name__)


def record_provider_error(provider: str, error: BaseException) -> None:
    PROVIDER_ERRORS.labels(provider, getattr(error, "kind", "provider_error")).inc()


def record_fallback(from_provider: str, to_provider: str, restarted: bool) -> None:
    FALLBACKS.labels(from_provider, to_provider, "true" if restarted else "false").inc()


def record_cache_hit(provider: str, model: str) -> None:
    CACHE_HITS.labels(provider, model).inc()


def record_redelivery(provider: str, reason: str, count: int = 1) -> None:
    REDELIVERIES.labels(provider, reason).inc(count)


def in_flight(provider: str) -> Gauge:
    """The in-flight gauge of a provider; `with in_flight(p).track_inprogress():` counts a run."""
    return GENERATIONS_IN_FLIGHT.labels(provider)


def queue_key_names(queue: str) -> list[str]:
    """The Redis lists that hold a kombu queue's messages, one per priority step."""
    return [queue] + [
        f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS[1:]
    ]


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (LLEN of each of its lists, in one round trip), by
    queue name in sorted order. Raises whatever the client raises when the broker fails."""
    names = sorted(set(queues))
    pipe = client.pipeline(transaction=False)
    for queue in names:
        for key in queue_key_names(queue):
            pipe.llen(key)
    lengths = pipe.execute()
    per_queue = len(KOMBU_PRIORITY_STEPS)
    return {
        queue: sum(lengths[index * per_queue : (index + 1) * per_queue])
        for index, queue in enumerate(names)
    }


class QueueDepthCollector(Collector):
    """`switchboard_queue_depth{queue}`: messages waiting in each provider's broker queue, read
    with LLEN when scraped. `switchboard_broker_up` is 0 when the broker did not answer."""

    def __init__(
        self, queues: Callable[[], Iterable[str]], client: Callable[[], redis.Redis]
    ) -> None:
        self._queues = queues
        self._client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Jobs waiting in each provider's broker queue (not yet taken by a worker).",
            labels=["queue"],
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_broker_up", "1 if the broker answered the queue-depth query, else 0."
        )
        try:
            for queue, waiting in queue_depths(self._client(), self._queues()).items():
                depth.add_metric([queue], float(waiting))
            up.add_metric([], 1.0)
            yield depth
        except Exception as exc:  # a scrape shows the broker as down instead of failing
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            up.add_metric([], 0.0)
        yield up


_collector_lock = threading.Lock()
_registered: dict[int, QueueDepthCollector] = {}


def register_queue_depth(
    queues: Callable[[], Iterable[str]],
    client: Callable[[], redis.Redis],
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Add the queue-depth collector to `registry` once per process."""
    with _collector_lock:
        if id(registry) in _registered:
            return
        collector = QueueDepthCollector(queues, client)
        registry.register(collector)
        _registered[id(registry)] = collector


def provider_queue_names() -> list[str]:
    """Every provider queue of the current catalog (it follows admins' changes)."""
    from shared.providers.directory import current_catalog

    return list(current_catalog().configs)


_broker_clients: dict[str, redis.Redis] = {}


def broker_client(url: str | None = None) -> redis.Redis:
    """A small client of its own for the broker at `url` (default: REDIS_URL), one per URL:
    a scrape must not wait behind the hot path's pool."""
    import redis as redis_lib

    if url is None:
        from shared.settings import get_settings

        url = get_settings().REDIS_URL
    client = _broker_clients.get(url)
    if client is None:
        client = redis_lib.Redis.from_url(
            url,
            max_connections=8,
            socket_timeout=QUEUE_DEPTH_TIMEOUT_SECONDS,
            socket_connect_timeout=QUEUE_DEPTH_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        client = _broker_clients.setdefault(url, client)
    return client


def serve_worker_metrics(address: str, port: int) -> bool:
    """Serve this process's metrics at http://address:port/metrics; False if the port is
    taken. A worker that cannot serve metrics keeps serving generations."""
    from prometheus_client import start_http_server

    register_queue_depth(provider_queue_names, broker_client)
    try:
        # A daemon thread: a greenlet under the gevent pool, whose sockets are cooperative.
        start_http_server(port, addr=address)
    except OSError as exc:
        log.error(
            "worker metrics not served: cannot listen on %s:%d (%s); give each worker "
            "process its own WORKER_METRICS_PORT",
            address,
            port,
            exc.strerror or type(exc).__name__,
        )
        return False
    log.info("worker metrics at http://%s:%d/metrics", address, port)
    return True
