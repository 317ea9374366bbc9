"""Storing how a generation ended: reply text, status and one usage row, then the end event.

The provider has already been paid for the text, so losing it to a database blip would bill
the user twice when the job runs again. The store is retried on fresh connections for
FINISH_RETRY_SECONDS; if the database is still away, the outcome is spooled in Redis and
the job is delivered again later, when the next delivery stores the spooled outcome instead
of generating anew.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, insert, literal, select, update
from sqlalchemy.sql import ColumnElement

from shared import metrics
from shared.channel import TokenChannel
from shared.db import DatabaseUnavailable, get_engine, retry_while_unavailable
from shared.models import Message, ProviderUsage, ReplyStatus
from shared.models.base import utcnow
from shared.pricing import cost_of, format_cost
from shared.providers.base import Usage
from shared.providers.directory import current_catalog
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.channel import ReplyPublisher

log = logging.getLogger(__name__)

SPOOL_TTL_SECONDS = 7 * 24 * 3600


def spool_key(reply_id: object) -> str:
    return f"sb:reply:{reply_id}:outcome"


@dataclass(frozen=True, slots=True)
class NextStep:
    """Where a failed attempt's reply goes next (workers/fallback.py)."""

    step: int
    provider: str
    model: str
    reason: str
    restart: bool  # tokens were sent: readers must drop them


@dataclass(slots=True)
class Outcome:
    status: ReplyStatus
    text: str
    usage: Usage | None
    finish_reason: str | None = None
    error: str | None = None
    ttft_ms: int | None = None
    elapsed_ms: int = 0
    # The failure is one another target may not have (workers/fallback.py decides).
    retry_elsewhere: bool = False
    cached: bool = False
    next_step: NextStep | None = None


@dataclass(frozen=True, slots=True)
class StoredFor:
    """The part of a claim the store needs (also what a spooled outcome keeps)."""

    reply_id: uuid.UUID
    chat_id: uuid.UUID
    user_id: uuid.UUID
    attempt: int  # the delivery at this step: 1, 2... (the lease's fencing token with `step`)
    provider: str
    model: str
    step: int  # the index of this target in the reply's route


def database_now(engine: Engine) -> ColumnElement[Any]:
    """The database's clock, so leases mean the same on every host (SQLite: this host's)."""
    if engine.dialect.name == "postgresql":
        return func.now()
    return literal(utcnow())


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def safe(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # Redis trouble must not lose the stored reply
        log.warning("token channel call failed: %s", type(exc).__name__)


def finish(
    target: StoredFor,
    outcome: Outcome,
    channel: TokenChannel,
    settings: Settings,
    publisher: ReplyPublisher | None = None,
) -> bool:
    """Store the outcome, then tell readers (and, for a fallback, send the next job).
    False when a later delivery took the reply over."""
    try:
        stored = retry_while_unavailable(
            lambda: _store(target, outcome),
            settings.FINISH_RETRY_SECONDS,
            what=f"store reply {target.reply_id}",
        )
    except BaseException as exc:
        # Also when the hard time limit (a gevent.Timeout) or a shutdown cuts the retries
        # short: with the defaults the limit comes FINISH_RETRY_SECONDS after the soft one.
        # Not for a refusal by the database itself, which a later store would meet again.
        if isinstance(exc, DatabaseUnavailable) or not isinstance(exc, Exception):
            _spool(channel, target, outcome)
        raise
    if stored:
        _announce(target, outcome, channel, publisher)
    return stored


def store_spooled(reply_id: uuid.UUID, channel: TokenChannel, settings: Settings) -> bool:
    """Store an outcome an earlier delivery could not; True if there was one."""
    try:
        raw = channel.client.get(spool_key(reply_id))
    except Exception as exc:
        log.warning("could not read spooled outcome of %s: %s", reply_id, type(exc).__name__)
        return False
    if raw is None:
        return False
    target, outcome = _decode_spool(raw)
    stored = retry_while_unavailable(
        lambda: _store(target, outcome),
        settings.FINISH_RETRY_SECONDS,
        what=f"store spooled reply {reply_id}",
    )
    if stored:
        _announce(target, outcome, channel, None)
    safe(channel.client.delete, spool_key(reply_id))
    log.info("stored the spooled outcome of reply %s", reply_id)
    return True


def _cost(target: StoredFor, usage: Usage | None, cached: bool = False) -> Decimal | None:
    if cached:
        return Decimal(0)  # no provider call, whatever the model's price
    if usage is None:
        return None
    # Today's price: a price change applies to usage recorded after it.
    price = current_catalog().price(target.provider, target.model)
    return cost_of(price, usage.prompt_tokens, usage.completion_tokens)


def _reply_values(engine: Engine, outcome: Outcome) -> dict[str, Any]:
    moved = outcome.next_step
    if moved is None:
        return {
            "content": outcome.text,
            "status": outcome.status,
            "error": outcome.error,
            "finish_reason": outcome.finish_reason,
            "completed_at": database_now(engine),
            "lease_expires_at": None,
        }
    # Back in the queue, for the next target: a new step whose deliveries count from 0.
    return {
        "content": "",
        "status": ReplyStatus.queued,
        "error": None,
        "finish_reason": None,
        "provider_name": moved.provider,
        "model_name": moved.model,
        "route_step": moved.step,
        "attempts": 0,
        "lease_expires_at": None,
        "started_at": None,
        "enqueued_at": database_now(engine),
    }


def _already_stored(current: Any, target: StoredFor, outcome: Outcome) -> bool:
    """Whether this very store committed on an earlier try whose answer was lost."""
    if outcome.next_step is not None:
        return current.route_step >= outcome.next_step.step
    return (
        current.route_step == target.step
        and current.attempts == target.attempt
        and current.status == outcome.status
    )


def _store(target: StoredFor, outcome: Outcome) -> bool:
    """One transaction; False when a later delivery took the reply over. Safe to repeat:
    a retry after a commit whose answer was lost finds its own result and says True."""
    engine = get_engine()
    usage = outcome.usage
    with engine.begin() as conn:
        updated = conn.execute(
            update(Message)
            .where(
                Message.id == target.reply_id,
                Message.status == ReplyStatus.running,
                Message.route_step == target.step,
                Message.attempts == target.attempt,
            )
            .values(**_reply_values(engine, outcome))
        ).rowcount
        if updated == 0:
            current = conn.execute(
                select(Message.status, Message.attempts, Message.route_step).where(
                    Message.id == target.reply_id
                )
            ).one_or_none()
            if current is not None:
                if _already_stored(current, target, outcome):
                    return True
                log.info("reply %s was taken over by a later delivery", target.reply_id)
                return False
            # The chat was deleted meanwhile: the provider was still paid, so keep the
            # usage row (the billing record), detached from the deleted messages.
        cost = _cost(target, usage, outcome.cached)
        conn.execute(
            insert(ProviderUsage).values(
                user_id=target.user_id,
                provider_name=target.provider,
                model_name=target.model,
                chat_id=target.chat_id if updated else None,
                message_id=target.reply_id if updated else None,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                tokens_used=usage.total_tokens if usage else None,
                usage_estimated=usage.estimated if usage else False,
                prompt_tokens_estimated=usage.prompt_estimated if usage else False,
                completion_tokens_estimated=usage.completion_estimated if usage else False,
                cost=cost,
                response_time_ms=outcome.elapsed_ms,
                time_to_first_token_ms=outcome.ttft_ms,
                status=outcome.status,
                route_step=target.step,
                error=outcome.error,
                cached=outcome.cached,
            )
        )
    # After the commit: the metrics count exactly the usage rows stored.
    metrics.record_generation(
        target.provider,
        target.model,
        str(outcome.status),
        usage,
        cost,
        outcome.ttft_ms,
        outcome.elapsed_ms,
    )
    return bool(updated)


def usage_data(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    estimated_fields = [
        name
        for name, flag in (
            ("prompt_tokens", usage.prompt_estimated),
            ("completion_tokens", usage.completion_estimated),
        )
        if flag
    ]
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "estimated": usage.estimated,
        "estimated_fields": estimated_fields,
    }


def _announce(
    target: StoredFor,
    outcome: Outcome,
    channel: TokenChannel,
    publisher: ReplyPublisher | None,
) -> None:
    usage = usage_data(outcome.usage)
    moved = outcome.next_step
    if moved is not None:
        _announce_move(target, moved, channel, publisher)
        return
    if outcome.status is ReplyStatus.failed:
        event, data = "error", {"status": "failed", "error": outcome.error, "usage": usage}
    else:
        cost = _cost(target, outcome.usage, outcome.cached)
        event = "done"
        data = {
            "status": str(outcome.status),
            "usage": usage,
            "cost": format_cost(cost) if cost is not None else None,
            "finish_reason": outcome.finish_reason,
        }
    if publisher is not None:
        publisher.finish(event, data)
    else:
        safe(channel.append, target.reply_id, [(event, data)])
    safe(channel.client.delete, enqueued_marker_key(target.reply_id))


def _announce_move(
    target: StoredFor, moved: NextStep, channel: TokenChannel, publisher: ReplyPublisher | None
) -> None:
    # Before the first token the move is invisible to readers: they only see the next
    # target's tokens. After it, they are told to drop what they have.
    if moved.restart:
        data = {"provider": moved.provider, "model": moved.model, "reason": moved.reason}
        if publisher is not None:
            publisher.emit("restart", data)
        else:
            safe(channel.append, target.reply_id, [("restart", data)])
    from workers.celery_app import enqueue_generation  # the Celery app imports this module

    try:
        enqueue_generation(target.reply_id, moved.provider, moved.step)
    except Exception as exc:  # the redelivery sweeper sends it once the broker is back
        log.warning("fallback job for %s not sent: %s", target.reply_id, type(exc).__name__)


def enqueued_marker_key(reply_id: object) -> str:
    """Exists while the reply's job is in the broker (see workers/redelivery.py)."""
    return f"sb:reply:{reply_id}:enqueued"


def _spool(channel: TokenChannel, target: StoredFor, outcome: Outcome) -> None:
    record = {
        "target": {
            **{f.name: getattr(target, f.name) for f in fields(StoredFor)},
            "reply_id": str(target.reply_id),
            "chat_id": str(target.chat_id),
            "user_id": str(target.user_id),
        },
        "outcome": {
            **asdict(outcome),
            "status": str(outcome.status),
            "usage": None,
            "next_step": asdict(outcome.next_step) if outcome.next_step else None,
        },
    }
    if outcome.usage is not None:
        record["outcome"]["usage"] = {
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "prompt_estimated": outcome.usage.prompt_estimated,
            "completion_estimated": outcome.usage.completion_estimated,
        }
    try:
        channel.client.set(spool_key(target.reply_id), json.dumps(record), ex=SPOOL_TTL_SECONDS)
        log.warning("database away: reply %s kept in Redis until it can be stored", target.reply_id)
    except Exception as exc:
        log.error("reply %s could not be kept anywhere: %s", target.reply_id, type(exc).__name__)


def _decode_spool(raw: str) -> tuple[StoredFor, Outcome]:
    record = json.loads(raw)
    t = record["target"]
    target = StoredFor(
        uuid.UUID(t["reply_id"]),
        uuid.UUID(t["chat_id"]),
        uuid.UUID(t["user_id"]),
        t["attempt"],
        t["provider"],
        t["model"],
        t.get("step", 0),
    )
    o = record["outcome"]
    usage = Usage(**o["usage"]) if o["usage"] is not None else None
    outcome = Outcome(
        ReplyStatus(o["status"]),
        o["text"],
        usage,
        finish_reason=o["finish_reason"],
        error=o["error"],
        ttft_ms=o["ttft_ms"],
        elapsed_ms=o["elapsed_ms"],
        cached=o.get("cached", False),
        next_step=NextStep(**o["next_step"]) if o.get("next_step") else None,
    )
    return target, outcome
