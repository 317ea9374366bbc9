"""The Celery app: one queue per provider, named after it.

celery -A workers.celery_app worker -P gevent -Q anthropic     # one provider, for good
switchboard worker                                              # every queue, as they come

A worker started without -Q consumes every provider's queue, including those an admin adds
later: it starts consuming a new provider's queue when its catalog shows it (within
PROVIDER_CATALOG_CHECK_SECONDS). A worker started with -Q stays on its queues. Queues missing
from `task_queues` are created as Celery creates missing queues: a direct exchange named
after the queue, the same layout as the declared ones.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_init, worker_ready
from celery.utils.nodenames import worker_direct
from kombu import Exchange, Queue

from shared.providers.catalog import provider_configs
from shared.providers.directory import Catalog, current_catalog, provider_directory
from shared.redis_client import CONNECT_TIMEOUT_SECONDS, MAX_CONNECTIONS, sync_redis
from shared.settings import Settings, get_settings
from workers.outcomes import enqueued_marker_key
from workers.redelivery import RedeliverySweeper

# The marker says "the broker holds this job"; it only needs to outlive a long queue wait.
ENQUEUED_MARKER_TTL_SECONDS = 24 * 3600

log = logging.getLogger(__name__)

GENERATION_TASK = "generation.run"
WAKE_TASK = "worker.wake"


def queue_names(settings: Settings) -> list[str]:
    return list(provider_configs(settings))


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("switchboard", include=["workers.tasks"])
    transport = {
        # Above the hard time limit, or Redis redelivers a job that is still running.
        "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
        "socket_timeout": 30,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "max_connections": MAX_CONNECTIONS,
    }
    app.conf.update(
        broker_url=settings.REDIS_URL,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=50,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
        task_time_limit=settings.TASK_TIME_LIMIT,
        # Each queue has its own exchange and key: with a shared default exchange, kombu's
        # Redis transport would copy every job into every queue.
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in queue_names(settings)
        ],
        task_default_queue=settings.DEFAULT_PROVIDER,
        task_serializer="json",
        accept_content=["json"],
        # Flower shows tasks and queues from these events.
        worker_send_task_events=settings.CELERY_TASK_EVENTS,
        task_send_sent_event=settings.CELERY_TASK_EVENTS,
        worker_hijack_root_logger=False,
        # Each worker also consumes a queue of its own, used to wake its loop (_wake).
        worker_direct=True,
    )
    return app


celery_app = create_celery_app(get_settings())


@lru_cache
def broker_redis() -> redis.Redis:
    return sync_redis(get_settings().REDIS_URL)


def enqueue_generation(reply_id: uuid.UUID, provider: str, step: int | None = None) -> None:
    """Send the job to the provider's queue. Raises if the broker cannot be reached.

    `step` is the route step the job runs (workers/fallback.py); None runs whichever is
    current (a submission's first job, or one the redelivery sweeper sends again)."""
    celery_app.send_task(
        GENERATION_TASK,
        args=[str(reply_id)] if step is None else [str(reply_id), step],
        queue=provider,
        retry=True,
        retry_policy={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    # Beside the job in the broker's Redis: a restart that loses the job loses this too. Set
    # after the send, so the worker is not kept waiting for it; a job sent without it is only
    # sent again by the sweeper a visibility timeout later, and that copy finds its reply taken.
    try:
        broker_redis().set(enqueued_marker_key(reply_id), "1", ex=ENQUEUED_MARKER_TTL_SECONDS)
    except Exception as exc:
        log.warning("enqueued marker of %s not set: %s", reply_id, type(exc).__name__)


@worker_ready.connect
def _start_redelivery_sweeper(sender: Any, **_: object) -> None:
    from workers.generation import token_channel

    settings = get_settings()
    sweeper = RedeliverySweeper(
        celery_app,
        broker_redis(),
        token_channel(),
        queues=_consumed_queues(sender) or set(queue_names(settings)),
        visibility_timeout=settings.BROKER_VISIBILITY_TIMEOUT,
        queued_reply_timeout=settings.QUEUED_REPLY_TIMEOUT_SECONDS,
        enqueue=enqueue_generation,
    )
    if consumes_every_queue():
        follow_catalog(sender, sweeper)
    sweeper.start()


def consumes_every_queue() -> bool:
    # Celery sets `_consume_from` only when -Q selects queues; there is no public flag.
    return celery_app.amqp.queues._consume_from is None


def follow_catalog(consumer: Any, sweeper: RedeliverySweeper) -> None:
    """Consume every provider queue the catalog has, now and after each change."""

    def consume_new_queues(catalog: Catalog) -> None:
        consumed = _consumed_queues(consumer)
        added: list[str] = []
        for name in catalog.configs:
            if name not in consumed:
                # On the consumer's own loop, as Celery's add_consumer control command does.
                consumer.call_soon(consumer.add_task_queue, name, exchange=name, routing_key=name)
                added.append(name)
                log.info("consuming the new provider queue %s", name)
        if added:
            _wake(consumer.hostname)
        sweeper.queues = sorted(consumed | set(catalog.configs))

    provider_directory.add_listener(consume_new_queues)
    consume_new_queues(current_catalog())


def _wake(hostname: str) -> None:
    """End the consumer loop's wait now, so the queues added with call_soon are consumed now.

    The gevent pool's loop runs call_soon operations between waits for messages, and Celery
    waits 2 s at a time; a message in this worker's own queue (worker_direct) ends the wait.
    """
    try:
        celery_app.send_task(WAKE_TASK, queue=worker_direct(hostname))
    except Exception as exc:  # the queue is still added, after the current wait
        log.warning("wake-up for new queues not sent: %s", type(exc).__name__)


def _consumed_queues(consumer: object) -> set[str]:
    """The provider queues this worker consumes (`-Q`; not its worker_direct queue), so it
    only re-enqueues its own providers' jobs."""
    task_consumer = getattr(consumer, "task_consumer", None)
    own = worker_direct(getattr(consumer, "hostname", "")).name
    return {queue.name for queue in getattr(task_consumer, "queues", []) if queue.name != own}


def warm_up_providers(names: list[str]) -> None:
    """Import every adapter and build its client now, not inside the first job's time limit:
    the SDK imports take seconds of CPU (more under coverage), which would otherwise eat
    into the first generation's TASK_SOFT_TIME_LIMIT and block every other greenlet."""
    from shared.providers.manager import provider_manager

    for name in names:
        try:
            provider_manager.get_provider(name)
        except Exception as exc:  # a broken plugin fails its own jobs, not the worker
            log.warning("provider %s could not be loaded: %s", name, type(exc).__name__)


@worker_init.connect
def _init_worker(**_: object) -> None:
    # In this order: database connections made before the psycopg2 patch would block every
    # greenlet, and the providers to warm up are the catalog's, read from the database.
    _make_psycopg2_cooperative()
    settings = get_settings()
    provider_directory.start(settings)
    warm_up_providers(list(current_catalog(settings).configs))
    if settings.WORKER_METRICS_PORT:
        from shared.metrics import serve_worker_metrics

        serve_worker_metrics(settings.WORKER_METRICS_BIND_ADDRESS, settings.WORKER_METRICS_PORT)


def _make_psycopg2_cooperative() -> None:
    # Under the gevent pool, psycopg2 would block every greenlet during a query.
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
