"""The provider queues as an admin sees them: jobs waiting in the broker, and the replies the
database holds queued or running, for every provider of the catalog."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import metrics
from shared.models import Message, ReplyStatus, User
from shared.providers.directory import current_catalog
from shared.settings import Settings

log = logging.getLogger(__name__)

ReplyCounts = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class QueueView:
    provider: str
    # The broker queue the provider's jobs go to (one per provider, named after it).
    queue: str
    # Jobs waiting in the broker, not yet taken by a worker; None when the broker is down.
    depth: int | None
    queued: int
    running: int


@dataclass(frozen=True, slots=True)
class QueueOverview:
    flower_url: str
    broker_up: bool
    data: list[QueueView]


def reply_counts(session: Session, _user: User) -> ReplyCounts:
    """Replies queued or running, by (provider, status): one grouped query on the
    (status, provider_name) index."""
    rows = session.execute(
        select(Message.provider_name, Message.status, func.count())
        .where(Message.status.in_((ReplyStatus.queued, ReplyStatus.running)))
        .group_by(Message.provider_name, Message.status)
    )
    return {(provider, status): count for provider, status, count in rows if provider}


def queue_overview(settings: Settings, counts: ReplyCounts) -> QueueOverview:
    """Every catalog provider's queue, with its broker depth (read from the broker Redis;
    `broker_up` false and each depth None when it does not answer)."""
    names = sorted(current_catalog(settings).configs)
    depths: dict[str, int] | None
    try:
        depths = metrics.queue_depths(metrics.broker_client(settings.REDIS_URL), names)
    except Exception as exc:  # the page shows the broker as down instead of failing
        log.warning("queue depth unavailable: %s", type(exc).__name__)
        depths = None
    return QueueOverview(
        flower_url=settings.FLOWER_URL,
        broker_up=depths is not None,
        data=[
            QueueView(
                provider=name,
                queue=name,
                depth=depths.get(name) if depths is not None else None,
                queued=counts.get((name, ReplyStatus.queued), 0),
                running=counts.get((name, ReplyStatus.running), 0),
            )
            for name in names
        ],
    )
