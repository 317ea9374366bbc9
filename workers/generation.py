"""Running one generation: claim the reply, stream from the provider, publish, store.

The hot path touches the database twice per reply (claim, then finish) and Redis once per
flush of the token batch, never once per token. Whatever stops a generation (the provider,
a cancel, a deadline, a hard time limit), the text and usage streamed so far are stored.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Interval,
    Select,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
    update,
)

from shared import metrics
from shared.channel import ReplyPublisher, TokenChannel
from shared.db import DatabaseUnavailable, get_engine, retry_while_unavailable
from shared.models import Chat, Message, ReplyStatus, SystemPrompt
from shared.models.base import utcnow
from shared.models.provider import ProviderConfigRow, ProviderModel
from shared.providers.base import Message as ProviderMessage
from shared.providers.base import (
    RateLimitReport,
    StreamEnd,
    TextDelta,
    Usage,
    UsageReport,
    merge_usage,
)
from shared.providers.errors import ProviderError
from shared.providers.manager import provider_manager
from shared.redis_client import sync_redis
from shared.routing.cache import cache_key
from shared.routing.plan import RoutePlan, target_health
from shared.routing.targets import Target
from shared.settings import Settings, get_settings
from workers import cached_replies, fallback, outcomes
from workers.outcomes import Outcome, StoredFor
from workers.prompt import HistoryRow, build_prompt
from workers.watchdog import CANCELLED, STALLED, GenerationInterrupted, Watchdog

log = logging.getLogger(__name__)

__all__ = ["DatabaseUnavailable", "run_generation"]

# A stale pooled connection after a database restart costs one failed attempt; the rest of
# an outage is waited out by the task's own retry (it has claimed nothing yet).
CLAIM_RETRY_SECONDS = 3.0
# Enough history for any context window; older turns are dropped by build_prompt anyway.
HISTORY_ROWS = 400


@dataclass(frozen=True, slots=True)
class Claim(StoredFor):
    """A delivery's hold on its reply, with the request the provider gets."""

    temperature: float | None
    max_tokens: int | None
    stop: list[str] | None
    messages: list[ProviderMessage]
    plan: RoutePlan

    @property
    def target(self) -> Target:
        return Target(self.provider, self.model)


@dataclass(slots=True)
class Progress:
    """What a generation has received so far; read when it ends in any way."""

    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    reported: UsageReport | None = None
    end: StreamEnd | None = None
    ttft_ms: int | None = None

    def outcome(self, claim: Claim, status: ReplyStatus, error: str | None) -> Outcome:
        text = "".join(self.parts)
        usage: Usage | None
        if self.end is not None and status is ReplyStatus.completed:
            usage = self.end.usage
        elif text or self.reported is not None or status is ReplyStatus.cancelled:
            # Keep what the provider counted; estimate only the rest, and say so.
            usage = merge_usage(self.reported, claim.messages, text)
        else:
            usage = None  # nothing was sent or received: nothing to bill
        return Outcome(
            status,
            text,
            usage,
            finish_reason=self.end.finish_reason if self.end else None,
            error=error,
            ttft_ms=self.ttft_ms,
            elapsed_ms=int((time.monotonic() - self.started) * 1000),
        )


@lru_cache
def token_channel() -> TokenChannel:
    settings = get_settings()
    return TokenChannel(
        sync_redis(settings.REDIS_URL),
        settings.TOKEN_STREAM_TTL_SECONDS,
        flush_interval=settings.TOKEN_FLUSH_INTERVAL_MS / 1000,
    )


@lru_cache
def watchdog() -> Watchdog:
    settings = get_settings()
    return Watchdog(sync_redis(settings.REDIS_URL), settings.CANCEL_CHECK_INTERVAL_SECONDS)


def run_generation(
    reply_id: uuid.UUID,
    settings: Settings | None = None,
    channel: TokenChannel | None = None,
    step: int | None = None,
) -> None:
    """Run the reply's current target. `step` is the route step the job was sent for (None:
    whichever is current). Raises DatabaseUnavailable when the caller should deliver the job
    again later."""
    settings = settings or get_settings()
    channel = channel or token_channel()

    def claim_reply(queued_only: bool) -> Claim | None:
        return retry_while_unavailable(
            lambda: _claim(reply_id, settings, step, queued_only=queued_only),
            CLAIM_RETRY_SECONDS,
            what=f"claim {reply_id}",
        )

    # A queued reply has no spooled outcome (one is only spooled while its reply is running),
    # so a first delivery claims at once; any other looks for one first.
    claim = claim_reply(queued_only=True)
    if claim is None:
        # A finish that could not be stored earlier is stored now, never generated again.
        if outcomes.store_spooled(reply_id, channel, settings):
            return
        claim = claim_reply(queued_only=False)
    if claim is None:
        # Finished already, or another delivery holds a live lease, or the reply has moved
        # on to a later step (whose own job runs it).
        return
    if claim.attempt > settings.TASK_MAX_DELIVERIES:
        abandoned = Outcome(
            ReplyStatus.failed,
            "",
            None,
            error=f"Generation abandoned after {claim.attempt - 1} deliveries: "
            "the worker stopped during each one",
        )
        outcomes.finish(claim, abandoned, channel, settings)
        return
    if claim.attempt > 1:
        metrics.record_redelivery(claim.provider, "delivered_again")
        outcomes.safe(channel.restart, claim.reply_id, "the job was delivered again; restarting")

    publisher = channel.publisher(claim.reply_id)
    key = None
    if claim.plan.cache:
        key = cache_key(
            claim.provider,
            claim.model,
            claim.messages,
            claim.temperature,
            claim.max_tokens,
            claim.stop,
        )
        if (hit := cached_replies.lookup(key)) is not None:
            metrics.record_cache_hit(claim.provider, claim.model)
            replayed = cached_replies.replay(hit, publisher)
            outcomes.finish(claim, replayed, channel, settings, publisher)
            return
    progress = Progress()
    try:
        with metrics.in_flight(claim.provider).track_inprogress():
            outcome = _stream(claim, publisher, settings, progress)
    except BaseException as exc:
        # A hard time limit (gevent.Timeout) or a worker shutdown: keep what was streamed.
        error = f"Generation stopped: {type(exc).__name__}"
        outcomes.finish(
            claim, progress.outcome(claim, ReplyStatus.failed, error), channel, settings, publisher
        )
        raise
    if outcome.retry_elsewhere and outcome.error is not None:
        outcome.next_step = fallback.next_step(
            claim, claim.plan, settings, outcome.error, tokens_sent=bool(progress.parts)
        )
        if outcome.next_step is None:
            outcome.error = fallback.exhausted(claim.plan, outcome.error)
    stored = outcomes.finish(claim, outcome, channel, settings, publisher)
    if stored and outcome.next_step is not None:
        metrics.record_fallback(
            claim.provider, outcome.next_step.provider, outcome.next_step.restart
        )
    if stored and key is not None and outcome.status is ReplyStatus.completed:
        cached_replies.remember(key, outcome)


@lru_cache
def _claim_statement(postgresql: bool, at_step: bool, queued_only: bool) -> Update:
    """The claim's UPDATE ... RETURNING, built once per shape: building and hashing a Core
    statement costs about as much Python as running it (tests/benchmarks, docs/benchmarks.md).

    Parameters: reply_id, step (when `at_step`), and the clock: on PostgreSQL the database's
    (`lease`, an interval), elsewhere this host's (`now`, `lease_until`)."""
    if postgresql:
        now: ColumnElement[Any] = func.now()
        lease_until = now + bindparam("lease", type_=Interval())
    else:
        now = bindparam("now", type_=Message.started_at.type)
        lease_until = bindparam("lease_until", type_=Message.lease_expires_at.type)
    claimable = Message.status == ReplyStatus.queued
    if not queued_only:
        expired = (Message.status == ReplyStatus.running) & (Message.lease_expires_at < now)
        claimable = or_(claimable, expired)
    return (
        update(Message)
        .where(
            Message.id == bindparam("reply_id"),
            Message.route_step == bindparam("step") if at_step else true(),
            claimable,
        )
        .values(
            status=ReplyStatus.running,
            attempts=Message.attempts + 1,
            lease_expires_at=lease_until,
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
            Message.stop,
            Message.created_at,
            Message.reply_to_id,
            Message.route_step,
            Message.routing,
            Message.prompt,
            # In the same statement: a compatible-API call's claim is this one statement.
            select(Chat.user_id).where(Chat.id == Message.chat_id).scalar_subquery().label("owner"),
        )
    )


def _claim(
    reply_id: uuid.UUID, settings: Settings, step: int | None = None, *, queued_only: bool = False
) -> Claim | None:
    """Take the reply for this delivery: queued, or (unless `queued_only`) running under an
    expired lease; for a job sent for one step, only while the reply is still on that step."""
    engine = get_engine()
    postgresql = engine.dialect.name == "postgresql"
    lease = outcomes.seconds(settings.TASK_TIME_LIMIT)
    params: dict[str, Any] = {"reply_id": reply_id, "step": step}
    if postgresql:
        params["lease"] = lease
    else:
        params["now"] = utcnow()
        params["lease_until"] = params["now"] + lease
    statement = _claim_statement(postgresql, step is not None, queued_only)
    # Core statements on a plain connection: the ORM's unit of work would cost more CPU than
    # the queries themselves, and nothing here needs identity-mapped objects.
    with engine.begin() as conn:
        row = conn.execute(statement, params).one_or_none()
        if row is None:
            if step is not None and not queued_only:
                _resend_if_moved(conn, reply_id, step)
            return None
        if row.prompt is not None:
            # A compatible-API call: the conversation as the caller sent it.
            messages = [ProviderMessage.model_validate(m) for m in row.prompt]
        else:
            messages = _chat_prompt(conn, row, settings)
    return Claim(
        reply_id=reply_id,
        chat_id=row.chat_id,
        user_id=row.owner,
        attempt=row.attempts,
        provider=row.provider_name,
        model=row.model_name,
        step=row.route_step,
        temperature=row.temperature,
        max_tokens=row.max_tokens,
        stop=row.stop,
        messages=messages,
        plan=RoutePlan.from_json(row.routing, row.provider_name, row.model_name),
    )


@lru_cache
def _prompt_statements() -> tuple[Select[Any], Select[Any]]:
    """The chat's system prompt (its own, else the owner's default) with the model's context
    window, and its history: built once, as the claim is."""
    context_tokens = (
        select(ProviderModel.max_context_length)
        .join(ProviderConfigRow, ProviderConfigRow.id == ProviderModel.provider_id)
        .where(
            ProviderConfigRow.provider_name == bindparam("provider"),
            ProviderModel.model_name == bindparam("model"),
        )
        .limit(1)
        .scalar_subquery()
    )
    system = (
        select(SystemPrompt.content, context_tokens)
        .select_from(Chat)
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
        .where(Chat.id == bindparam("chat_id"))
        .limit(1)
    )
    history = (
        select(Message.id, Message.role, Message.content, Message.status, Message.reply_to_id)
        .where(Message.chat_id == bindparam("chat_id"), Message.created_at < bindparam("before"))
        .order_by(Message.created_at.desc())
        .limit(HISTORY_ROWS)
    )
    return system, history


def _chat_prompt(conn: Connection, row: Any, settings: Settings) -> list[ProviderMessage]:
    """The prompt built from the chat's system prompt, its history and the model's context
    window."""
    system_statement, history_statement = _prompt_statements()
    system, context = conn.execute(
        system_statement,
        {"chat_id": row.chat_id, "provider": row.provider_name, "model": row.model_name},
    ).one()
    history = conn.execute(
        history_statement, {"chat_id": row.chat_id, "before": row.created_at}
    ).all()
    context = context or settings.DEFAULT_CONTEXT_TOKENS
    return build_prompt(
        system,
        [HistoryRow(*r) for r in reversed(history)],
        row.reply_to_id,
        context_tokens=context,
        reserved_for_reply=row.max_tokens or min(1024, context // 4),
    )


def _resend_if_moved(conn: Connection, reply_id: uuid.UUID, step: int) -> None:
    """A job for a step the reply has left, while the reply waits queued at a later step:
    the worker that moved it may have stopped before sending the next job, so send it (a
    second copy finds the reply taken and does nothing)."""
    row = conn.execute(
        select(Message.status, Message.route_step, Message.provider_name).where(
            Message.id == reply_id
        )
    ).one_or_none()
    if row is None or row.status != ReplyStatus.queued or row.route_step == step:
        return
    from workers.celery_app import enqueue_generation  # the Celery app imports the tasks

    try:
        enqueue_generation(reply_id, row.provider_name, row.route_step)
    except Exception as exc:  # the redelivery sweeper sends it once the broker is back
        log.warning(
            "job for step %d of %s not sent: %s", row.route_step, reply_id, type(exc).__name__
        )


def _stream(
    claim: Claim, publisher: ReplyPublisher, settings: Settings, progress: Progress
) -> Outcome:
    deadline = progress.started + settings.TASK_SOFT_TIME_LIMIT
    status, error = ReplyStatus.completed, None
    elsewhere = False
    events = None
    try:
        with watchdog().watch(claim.reply_id, deadline, settings.STREAM_STALL_SECONDS) as watch:
            provider = provider_manager.get_provider(claim.provider)
            events = provider.generate_streaming_response(
                claim.messages,
                claim.model,
                temperature=claim.temperature,
                max_tokens=claim.max_tokens,
                stop=claim.stop,
            )
            for event in events:
                watch.touch()
                if isinstance(event, TextDelta):
                    if progress.ttft_ms is None:
                        progress.ttft_ms = int((time.monotonic() - progress.started) * 1000)
                    progress.parts.append(event.text)
                    publisher.token(event.text)
                    if publisher.stop_requested or watch.reason == CANCELLED:
                        status = ReplyStatus.cancelled
                        break
                    if time.monotonic() > deadline:
                        status, error = ReplyStatus.failed, SOFT_LIMIT_ERROR
                        break
                elif isinstance(event, UsageReport):
                    progress.reported = event
                elif isinstance(event, StreamEnd):
                    progress.end = event
                elif isinstance(event, RateLimitReport):
                    _record_rate_limit(settings, claim.target, event)
    except GenerationInterrupted as interrupted:
        if interrupted.reason == CANCELLED:
            status = ReplyStatus.cancelled
        elif interrupted.reason == STALLED:
            status, elsewhere = ReplyStatus.failed, True
            error = (
                f"{claim.provider}: the stream stalled: nothing received for "
                f"{settings.STREAM_STALL_SECONDS:g} s"
            )
            fallback.record_failure(settings, claim.target, None)
        else:
            status, error = ReplyStatus.failed, SOFT_LIMIT_ERROR
    except ProviderError as exc:
        metrics.record_provider_error(claim.provider, exc)
        status, error = ReplyStatus.failed, str(exc)
        elsewhere = fallback.retry_elsewhere(exc)
        fallback.record_failure(settings, claim.target, exc)
    finally:
        if events is not None:
            events.close()  # closes the provider's HTTP response on cancel or error

    if status is ReplyStatus.completed and progress.end is None:
        status, error = ReplyStatus.failed, "The provider stream ended without its final event"
        elsewhere = True
    outcome = progress.outcome(claim, status, error)
    outcome.retry_elsewhere = elsewhere
    return outcome


def _record_rate_limit(settings: Settings, target: Target, report: RateLimitReport) -> None:
    try:
        target_health(settings).record_rate_limit(target, report)
    except Exception as exc:
        log.warning("rate-limit headroom not recorded: %s", type(exc).__name__)


SOFT_LIMIT_ERROR = "Generation exceeded TASK_SOFT_TIME_LIMIT"
