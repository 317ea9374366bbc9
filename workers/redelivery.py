"""Make sure every queued reply is generated, even when a worker or Redis loses its job,
without ever flooding a queue, and that no reply waits forever for a worker that is not there.

Three sweeps run on a timer in every worker process:

1. kombu's Redis transport restores unacknowledged messages older than the visibility timeout
   from its event loop. Under the gevent pool the worker uses kombu's blocking drain loop
   instead, which (kombu 5.7) returns before ever reaching that sweep, so a killed worker's job
   would wait forever. `restore_abandoned` runs the same restore, under kombu's own mutex.
2. The database is the record of what was asked for. A job is lost when its reply is still
   `queued` (or `running` under a long-expired lease) a visibility timeout after it was last
   sent, and its broker marker is gone: the marker (`sb:reply:{id}:enqueued`) lives in the
   broker's Redis beside the job, so a Redis restart without persistence loses both, while a
   job that is merely waiting in a long queue still has its marker and is left alone.
   `requeue_lost` sends such jobs again, oldest first, one sweeper per queue at a time.
3. `fail_orphans`: a reply queued for QUEUED_REPLY_TIMEOUT_SECONDS whose provider has no live
   worker (each sweeper keeps a heartbeat key per queue it consumes) ends `failed`, with an
   `error` event for its readers: its provider was removed or disabled, or no worker runs it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis
from celery import Celery
from sqlalchemy import func, or_, select, update

from shared import metrics
from shared.channel import TokenChannel
from shared.db import get_engine
from shared.models import Message, ReplyStatus
from workers.outcomes import database_now, enqueued_marker_key, seconds

log = logging.getLogger(__name__)

RESTORE_BATCH = 100
REQUEUE_BATCH = 100
ORPHAN_BATCH = 500
MIN_HEARTBEAT_TTL_SECONDS = 10


def sweep_interval(visibility_timeout: int) -> float:
    # A tenth of the timeout: a dead worker's job comes back within ~1.1x the timeout.
    return max(1.0, min(30.0, visibility_timeout / 10))


def consumer_key(queue: str) -> str:
    return f"sb:queue:{queue}:consumers"


def sweep_lock_key(name: str) -> str:
    return f"sb:sweep:{name}"


def restore_abandoned(app: Celery) -> None:
    with app.connection_for_read() as connection:
        connection.default_channel.qos.restore_visible(num=RESTORE_BATCH, interval=1)


def requeue_lost(
    client: redis.Redis,
    queue: str,
    lost_after_seconds: int,
    enqueue: Callable[[uuid.UUID, str], None],
) -> int:
    """Send again the jobs of this queue that the broker no longer holds."""
    engine = get_engine()
    now = database_now(engine)
    cutoff = now - seconds(lost_after_seconds)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Message.id)
            .where(
                Message.status.in_([ReplyStatus.queued, ReplyStatus.running]),
                Message.provider_name == queue,
                func.coalesce(Message.enqueued_at, Message.created_at) < cutoff,
                or_(
                    Message.status == ReplyStatus.queued,
                    Message.lease_expires_at < cutoff,
                ),
            )
            .order_by(Message.created_at)
            .limit(REQUEUE_BATCH)
        ).all()
    if not rows:
        return 0
    ids = [row.id for row in rows]
    pipe = client.pipeline(transaction=False)
    for reply_id in ids:
        pipe.exists(enqueued_marker_key(reply_id))
    lost = [reply_id for reply_id, held in zip(ids, pipe.execute(), strict=True) if not held]
    for reply_id in lost:
        enqueue(reply_id, queue)  # sets the marker again
        metrics.record_redelivery(queue, "requeued_lost")
    if lost:
        with engine.begin() as conn:
            conn.execute(
                update(Message).where(Message.id.in_(lost)).values(enqueued_at=database_now(engine))
            )
        log.warning("re-enqueued %d %s replies whose jobs were lost", len(lost), queue)
    return len(lost)


def fail_orphans(
    client: redis.Redis, channel: TokenChannel, timeout_seconds: int
) -> list[uuid.UUID]:
    """Fail replies queued too long for a provider no live worker consumes."""
    engine = get_engine()
    cutoff = database_now(engine) - seconds(timeout_seconds)
    waiting = Message.status == ReplyStatus.queued
    old = func.coalesce(Message.enqueued_at, Message.created_at) < cutoff
    with engine.connect() as conn:
        providers = conn.scalars(select(Message.provider_name).where(waiting, old).distinct()).all()
    orphaned = [p for p in providers if p is not None and not client.exists(consumer_key(p))]
    failed: list[uuid.UUID] = []
    for provider in orphaned:
        error = (
            f"No worker serves provider '{provider}' (it may be disabled or removed); "
            f"the reply waited more than {timeout_seconds} s in its queue"
        )
        with engine.begin() as conn:
            batch = select(Message.id).where(waiting, old, Message.provider_name == provider)
            ids = conn.scalars(
                update(Message)
                .where(Message.id.in_(batch.limit(ORPHAN_BATCH).scalar_subquery()), waiting)
                .values(status=ReplyStatus.failed, error=error, completed_at=database_now(engine))
                .returning(Message.id)
            ).all()
        for reply_id in ids:
            channel.append(reply_id, [("error", {"status": "failed", "error": error})])
        if ids:
            log.warning(
                "failed %d replies queued for %s, which no worker serves", len(ids), provider
            )
        failed += ids
    return failed


def _locked(client: redis.Redis, name: str, seconds_held: float) -> bool:
    """One sweeper at a time per name, across every worker process."""
    return bool(client.set(sweep_lock_key(name), "1", nx=True, px=int(seconds_held * 1000)))


class RedeliverySweeper:
    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        channel: TokenChannel,
        queues: set[str],
        visibility_timeout: int,
        queued_reply_timeout: int,
        enqueue: Callable[[uuid.UUID, str], None],
    ) -> None:
        self.app = app
        self.client = client
        self.channel = channel
        self.queues = sorted(queues)
        self.visibility_timeout = visibility_timeout
        self.queued_reply_timeout = queued_reply_timeout
        self.enqueue = enqueue
        self.interval = sweep_interval(visibility_timeout)

    def sweep(self) -> None:
        heartbeat_ttl = max(MIN_HEARTBEAT_TTL_SECONDS, int(self.interval * 3))
        steps: list[Callable[[], object]] = [lambda: restore_abandoned(self.app)]
        for queue in self.queues:
            steps.append(lambda q=queue: self.client.set(consumer_key(q), "1", ex=heartbeat_ttl))
            steps.append(lambda q=queue: self._requeue(q))
        steps.append(self._fail_orphans)
        for step in steps:
            try:
                step()
            except Exception as exc:  # the broker or database may be briefly away
                log.warning("redelivery sweep step failed: %s", type(exc).__name__)

    def _requeue(self, queue: str) -> None:
        if _locked(self.client, f"requeue:{queue}", self.interval * 0.9):
            requeue_lost(self.client, queue, self.visibility_timeout, self.enqueue)

    def _fail_orphans(self) -> None:
        if _locked(self.client, "orphans", self.interval * 0.9):
            fail_orphans(self.client, self.channel, self.queued_reply_timeout)

    def start(self) -> threading.Thread:
        def sweep_forever() -> None:
            while True:
                self.sweep()
                time.sleep(self.interval)

        thread = threading.Thread(target=sweep_forever, name="redelivery-sweeper", daemon=True)
        thread.start()
        return thread
