"""Running one generation: claim the reply, stream from the provider, publish, store.

The hot path touches the database twice per reply (claim, then finish) and Redis once per
flush of the token batch, never once per token.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import OperationalError

from shared.channel import ReplyPublisher, TokenChannel
from shared.db import get_engine
from shared.models import Chat, Message, ProviderUsage, ReplyStatus, SystemPrompt
from shared.models.base import utcnow
from shared.pricing import cost_of, price_for
from shared.providers.base import (
    Message as ProviderMessage,
)
from shared.providers.base import (
    StreamEnd,
    TextDelta,
    Usage,
    estimate_prompt_tokens,
    estimate_tokens,
)
from shared.providers.errors import ProviderError
from shared.providers.manager import provider_manager
from shared.redis_client import sync_redis
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Claim:
    reply_id: uuid.UUID
    chat_id: uuid.UUID
    user_id: uuid.UUID
    attempt: int
    provider: str
    model: str
    temperature: float | None
    max_tokens: int | None
    messages: list[ProviderMessage]


@dataclass(slots=True)
class Outcome:
    status: ReplyStatus
    text: str
    usage: Usage | None
    finish_reason: str | None = None
    error: str | None = None
    ttft_ms: int | None = None
    elapsed_ms: int = 0


@lru_cache
def token_channel() -> TokenChannel:
    settings = get_settings()
    return TokenChannel(
        sync_redis(settings.REDIS_URL),
        settings.TOKEN_STREAM_TTL_SECONDS,
        flush_interval=settings.TOKEN_FLUSH_INTERVAL_MS / 1000,
    )


def run_generation(
    reply_id: uuid.UUID, settings: Settings | None = None, channel: TokenChannel | None = None
) -> None:
    settings = settings or get_settings()
    channel = channel or token_channel()
    try:
        claim = _claim(reply_id, settings)
    except OperationalError as exc:
        raise DatabaseUnavailable(str(exc.orig)) from exc
    if claim is None:
        return  # finished already, or another delivery holds a live lease
    if claim.attempt > settings.TASK_MAX_DELIVERIES:
        outcome = Outcome(
            ReplyStatus.failed,
            "",
            None,
            error=f"Generation abandoned after {claim.attempt - 1} deliveries: "
            "the worker stopped during each one",
        )
        _finish(claim, outcome, channel)
        return
    if claim.attempt > 1:
        _safe(channel.restart, claim.reply_id, "the job was delivered again; the reply restarts")

    publisher = channel.publisher(claim.reply_id)
    outcome = Outcome(ReplyStatus.failed, "", None, error="Generation did not finish")
    try:
        outcome = _stream(claim, publisher, settings)
    finally:
        # Also on a hard time limit (gevent.Timeout) or worker shutdown: store what we have.
        _finish(claim, outcome, channel, publisher)


def _claim(reply_id: uuid.UUID, settings: Settings) -> Claim | None:
    """Take the reply for this delivery: queued, or running under an expired lease."""
    now = utcnow()
    # Core statements on a plain connection: the ORM's unit of work would cost more CPU than
    # the queries themselves, and nothing here needs identity-mapped objects.
    with get_engine().begin() as conn:
        row = conn.execute(
            update(Message)
            .where(
                Message.id == reply_id,
                or_(
                    Message.status == ReplyStatus.queued,
                    (Message.status == ReplyStatus.running) & (Message.lease_expires_at < now),
                ),
            )
            .values(
                status=ReplyStatus.running,
                attempts=Message.attempts + 1,
                lease_expires_at=now + timedelta(seconds=settings.TASK_TIME_LIMIT),
                started_at=now,
                content="",
            )
            .returning(
                Message.chat_id,
                Message.attempts,
                Message.provider_name,
                Message.model_name,
                Message.temperature,
                Message.max_tokens,
                Message.created_at,
            )
        ).one_or_none()
        if row is None:
            return None
        # The chat's owner and system prompt (its own, else the owner's default) in one query.
        owner, system = conn.execute(
            select(Chat.user_id, SystemPrompt.content)
            .outerjoin(
                SystemPrompt,
                or_(
                    SystemPrompt.id == Chat.system_prompt_id,
                    and_(
                        Chat.system_prompt_id.is_(None),
                        SystemPrompt.user_id == Chat.user_id,
                        SystemPrompt.is_default,
                    ),
                ),
            )
            .where(Chat.id == row.chat_id)
            .limit(1)
        ).one()
        history = conn.execute(
            select(Message.role, Message.content)
            .where(
                Message.chat_id == row.chat_id,
                Message.created_at < row.created_at,
                or_(Message.role == "user", Message.status == ReplyStatus.completed),
            )
            .order_by(Message.created_at)
        ).all()
        messages = [ProviderMessage(role="system", content=system)] if system else []
        messages += [ProviderMessage(role=role, content=content) for role, content in history]
        return Claim(
            reply_id=reply_id,
            chat_id=row.chat_id,
            user_id=owner,
            attempt=row.attempts,
            provider=row.provider_name,
            model=row.model_name,
            temperature=row.temperature,
            max_tokens=row.max_tokens,
            messages=messages,
        )


def _stream(claim: Claim, publisher: ReplyPublisher, settings: Settings) -> Outcome:
    parts: list[str] = []
    started = time.monotonic()
    deadline = started + settings.TASK_SOFT_TIME_LIMIT
    ttft_ms: int | None = None
    end: StreamEnd | None = None
    status, error = ReplyStatus.completed, None
    events = None
    try:
        provider = provider_manager.get_provider(claim.provider)
        events = provider.generate_streaming_response(
            claim.messages,
            claim.model,
            temperature=claim.temperature,
            max_tokens=claim.max_tokens,
        )
        for event in events:
            if isinstance(event, TextDelta):
                if ttft_ms is None:
                    ttft_ms = int((time.monotonic() - started) * 1000)
                parts.append(event.text)
                publisher.token(event.text)
                if publisher.stop_requested:
                    status = ReplyStatus.cancelled
                    break
                if time.monotonic() > deadline:
                    status, error = ReplyStatus.failed, "Generation exceeded TASK_SOFT_TIME_LIMIT"
                    break
            elif isinstance(event, StreamEnd):
                end = event
    except ProviderError as exc:
        status, error = ReplyStatus.failed, str(exc)
    finally:
        if events is not None:
            events.close()  # closes the provider's HTTP response on cancel or error

    text = "".join(parts)
    if end is not None and status is ReplyStatus.completed:
        usage: Usage | None = end.usage
    elif text or status is ReplyStatus.cancelled:
        # The provider sent no final count: estimate what was consumed, and say so.
        usage = Usage(estimate_prompt_tokens(claim.messages), estimate_tokens(text), estimated=True)
    else:
        usage = None
    if status is ReplyStatus.completed and end is None:
        status, error = ReplyStatus.failed, "The provider stream ended without its final event"
    return Outcome(
        status,
        text,
        usage,
        finish_reason=end.finish_reason if end else None,
        error=error,
        ttft_ms=ttft_ms,
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )


def _finish(
    claim: Claim, outcome: Outcome, channel: TokenChannel, publisher: ReplyPublisher | None = None
) -> None:
    """Store reply, status and usage in one transaction, then announce the end."""
    usage = outcome.usage
    cost = (
        cost_of(
            price_for(claim.provider, claim.model), usage.prompt_tokens, usage.completion_tokens
        )
        if usage is not None
        else None
    )
    with get_engine().begin() as conn:
        updated = conn.execute(
            update(Message)
            .where(
                Message.id == claim.reply_id,
                Message.status == ReplyStatus.running,
                Message.attempts == claim.attempt,
            )
            .values(
                content=outcome.text,
                status=outcome.status,
                error=outcome.error,
                completed_at=utcnow(),
                lease_expires_at=None,
            )
        ).rowcount
        if updated == 0:
            log.info("reply %s was taken over by a later delivery", claim.reply_id)
            return
        conn.execute(
            insert(ProviderUsage).values(
                user_id=claim.user_id,
                provider_name=claim.provider,
                model_name=claim.model,
                chat_id=claim.chat_id,
                message_id=claim.reply_id,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                tokens_used=usage.total_tokens if usage else None,
                usage_estimated=usage.estimated if usage else False,
                cost=cost,
                response_time_ms=outcome.elapsed_ms,
                time_to_first_token_ms=outcome.ttft_ms,
                status=outcome.status,
            )
        )
    usage_data = (
        {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "estimated": usage.estimated,
        }
        if usage
        else None
    )
    if outcome.status is ReplyStatus.failed:
        event, data = "error", {"status": "failed", "error": outcome.error, "usage": usage_data}
    else:
        event = "done"
        data = {
            "status": str(outcome.status),
            "usage": usage_data,
            "cost": str(cost) if cost is not None else None,
            "finish_reason": outcome.finish_reason,
        }
    if publisher is not None:
        publisher.finish(event, data)
    else:
        _safe(channel.append, claim.reply_id, [(event, data)])


def _safe(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # Redis trouble must not lose the stored reply
        log.warning("token channel call failed: %s", exc)
