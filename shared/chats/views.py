"""Read models of messages: a reply joined with its usage row, as the API shows it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Message, ProviderUsage, ReplyStatus

FINAL_STATUSES = frozenset(status for status in ReplyStatus if status.is_final)


@dataclass(slots=True)
class UsageView:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    estimated_fields: list[str]


@dataclass(slots=True)
class AttemptView:
    step: int
    provider: str
    model: str
    status: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Decimal | None
    time_to_first_token_ms: int | None
    response_time_ms: int | None
    cached: bool


@dataclass(slots=True)
class RouteView:
    requested: str | None
    why: str | None
    chain: list[dict[str, str]]
    cache: bool


@dataclass(slots=True)
class MessageView:
    id: uuid.UUID
    chat_id: uuid.UUID
    role: str
    status: str | None
    content: str
    provider: str | None
    model: str | None
    usage: UsageView | None
    cost: Decimal | None
    error: str | None
    finish_reason: str | None
    created_at: datetime
    completed_at: datetime | None
    # From the reply's usage row: null for user messages and for replies not finished yet.
    time_to_first_token_ms: int | None = None
    response_time_ms: int | None = None
    attempts: list[AttemptView] = field(default_factory=list)
    route: RouteView | None = None
    cached: bool = False
    rating: int | None = None


def attempt_view(row: ProviderUsage) -> AttemptView:
    return AttemptView(
        step=row.route_step,
        provider=row.provider_name,
        model=row.model_name,
        status=row.status,
        error=row.error,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost=row.cost,
        time_to_first_token_ms=row.time_to_first_token_ms,
        response_time_ms=row.response_time_ms,
        cached=row.cached,
    )


def _total_cost(rows: list[ProviderUsage]) -> Decimal | None:
    costs = [row.cost for row in rows if row.cost is not None]
    return sum(costs, Decimal(0)) if costs else None


def message_view(message: Message, rows: list[ProviderUsage]) -> MessageView:
    """`rows` are the reply's usage rows, one per attempt, in step order: usage and times
    are the last attempt's (the one whose text is stored), cost is what all of them cost."""
    usage = next((row for row in reversed(rows) if row.route_step == message.route_step), None)
    usage_view = None
    if usage is not None and usage.prompt_tokens is not None:
        completion = usage.completion_tokens or 0
        usage_view = UsageView(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=completion,
            total_tokens=usage.prompt_tokens + completion,
            estimated=usage.usage_estimated,
            estimated_fields=[
                name
                for name, flag in (
                    ("prompt_tokens", usage.prompt_tokens_estimated),
                    ("completion_tokens", usage.completion_tokens_estimated),
                )
                if flag
            ],
        )
    # The usage row is stored with the reply's final status; times before that are unknown.
    timed = usage if usage is not None and message.status in FINAL_STATUSES else None
    return MessageView(
        id=message.id,
        chat_id=message.chat_id,
        role=message.role,
        status=message.status,
        content=message.content,
        provider=message.provider_name,
        model=message.model_name,
        usage=usage_view,
        cost=_total_cost(rows),
        error=message.error,
        finish_reason=message.finish_reason,
        created_at=message.created_at,
        completed_at=message.completed_at,
        time_to_first_token_ms=timed.time_to_first_token_ms if timed is not None else None,
        response_time_ms=timed.response_time_ms if timed is not None else None,
        attempts=[attempt_view(row) for row in rows],
        route=_route_view(message),
        cached=usage.cached if usage is not None else False,
        rating=message.rating,
    )


def _route_view(message: Message) -> RouteView | None:
    if not message.routing:
        return None
    data = message.routing
    return RouteView(data.get("requested"), data.get("why"), data["chain"], bool(data.get("cache")))


def message_views(session: Session, messages: list[Message]) -> list[MessageView]:
    """The views of `messages`, with one query for all the replies' usage rows."""
    ids = [m.id for m in messages if m.role == "assistant"]
    usages: dict[uuid.UUID | None, list[ProviderUsage]] = {}
    if ids:
        rows = session.scalars(
            select(ProviderUsage)
            .where(ProviderUsage.message_id.in_(ids))
            .order_by(ProviderUsage.route_step)
        )
        for row in rows:
            usages.setdefault(row.message_id, []).append(row)
    return [message_view(m, usages.get(m.id, [])) for m in messages]
