"""An A/B experiment's results, per arm: what its chats' replies cost, how fast and how often
they failed, and how users rated them (docs/providers/routing.md, "A/B splits").

A chat joins an arm when it is created (chats.experiment_id, chats.experiment_arm), so an arm
is the usage of its chats: provider_usage joined to chats on chat_id. Every attempt is a
request (a reply that fell back counts its failed attempt too, with that attempt's tokens and
cost, as /admin/usage does). Within a range (`from` inclusive, `to` exclusive), chats count by
their creation, requests by their usage row's time, ratings by their reply's time.

Percentiles are exact: PostgreSQL's percentile_cont; on SQLite (the dev server), which has no
such aggregate, the same interpolation in Python over the arm's rows
(shared/usage/analytics.py does the same).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Float, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from shared.admin.routing import ExperimentView, experiment_view, load_experiment
from shared.admin.service import require_admin
from shared.errors import AppError
from shared.models import Chat, Message, ProviderUsage, ReplyStatus, User
from shared.providers.directory import current_catalog
from shared.routing.experiments import CONTROL, VARIANT
from shared.settings import Settings
from shared.usage.analytics import percentile_cont

ARMS = (CONTROL, VARIANT)


class InvalidResultsQuery(AppError):
    status_code = 422


@dataclass(slots=True)
class ArmResult:
    arm: str
    provider: str
    model: str
    chats: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # None: no priced request (as /admin/usage answers an unpriced group).
    cost: Decimal | None = None
    failed: int = 0
    error_rate: float = 0.0
    cached_requests: int = 0
    response_time_ms_p50: float | None = None
    response_time_ms_p95: float | None = None
    time_to_first_token_ms_p50: float | None = None
    time_to_first_token_ms_p95: float | None = None
    ratings_up: int = 0
    ratings_down: int = 0


@dataclass(frozen=True, slots=True)
class ExperimentResults:
    experiment: ExperimentView
    start: dt.datetime | None
    end: dt.datetime | None
    arms: tuple[ArmResult, ...]


def _utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is in no year UTC has
        raise InvalidResultsQuery(f"'{name}' is out of range in UTC") from None


def _in_range(
    column: Any, start: dt.datetime | None, end: dt.datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _pair(values: Any) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return values[0], values[1]


def experiment_results(
    session: Session,
    admin: User,
    settings: Settings,
    experiment_id: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> ExperimentResults:
    require_admin(admin)
    start, end = _utc(start, "from"), _utc(end, "to")
    if start is not None and end is not None and start >= end:
        raise InvalidResultsQuery("'from' must be before 'to'")
    row = load_experiment(session, experiment_id)
    view = experiment_view(row, current_catalog(settings))
    arms = {
        CONTROL: ArmResult(CONTROL, view.control.provider, view.control.model),
        VARIANT: ArmResult(VARIANT, view.variant.provider, view.variant.model),
    }
    in_experiment = (Chat.experiment_id == experiment_id) & Chat.experiment_arm.in_(ARMS)

    chats = session.execute(
        select(Chat.experiment_arm, func.count())
        .where(in_experiment, *_in_range(Chat.created_at, start, end))
        .group_by(Chat.experiment_arm)
    )
    for arm, count in chats:
        arms[arm].chats = int(count)

    postgres = session.get_bind().dialect.name == "postgresql"
    usage_filters = [in_experiment, *_in_range(ProviderUsage.created_at, start, end)]
    measures: list[ColumnElement[Any]] = [
        func.count().label("requests"),
        func.coalesce(func.sum(ProviderUsage.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(ProviderUsage.completion_tokens), 0).label("completion_tokens"),
        func.sum(ProviderUsage.cost).label("cost"),
        func.count().filter(ProviderUsage.status == ReplyStatus.failed.value).label("failed"),
        func.count().filter(ProviderUsage.cached.is_(True)).label("cached"),
    ]
    if postgres:
        fractions = literal_column("ARRAY[0.5, 0.95]", ARRAY(Float))
        measures += [
            func.percentile_cont(fractions)
            .within_group(ProviderUsage.response_time_ms)
            .label("response_time"),
            func.percentile_cont(fractions)
            .within_group(ProviderUsage.time_to_first_token_ms)
            .label("ttft"),
        ]
    usage = session.execute(
        select(Chat.experiment_arm.label("arm"), *measures)
        .select_from(ProviderUsage)
        .join(Chat, ProviderUsage.chat_id == Chat.id)
        .where(*usage_filters)
        .group_by(Chat.experiment_arm)
    ).mappings()
    for figures in usage:
        result = arms[figures["arm"]]
        result.requests = int(figures["requests"])
        result.prompt_tokens = int(figures["prompt_tokens"])
        result.completion_tokens = int(figures["completion_tokens"])
        result.total_tokens = result.prompt_tokens + result.completion_tokens
        result.cost = Decimal(figures["cost"]) if figures["cost"] is not None else None
        result.failed = int(figures["failed"])
        result.error_rate = result.failed / result.requests if result.requests else 0.0
        result.cached_requests = int(figures["cached"])
        if postgres:
            result.response_time_ms_p50, result.response_time_ms_p95 = _pair(
                figures["response_time"]
            )
            result.time_to_first_token_ms_p50, result.time_to_first_token_ms_p95 = _pair(
                figures["ttft"]
            )
    if not postgres:
        _percentiles_in_python(session, arms, usage_filters)

    ratings = session.execute(
        select(
            Chat.experiment_arm,
            func.count().filter(Message.rating > 0),
            func.count().filter(Message.rating < 0),
        )
        .select_from(Message)
        .join(Chat, Message.chat_id == Chat.id)
        .where(
            in_experiment,
            Message.role == "assistant",
            Message.rating.is_not(None),
            *_in_range(Message.created_at, start, end),
        )
        .group_by(Chat.experiment_arm)
    )
    for arm, up, down in ratings:
        arms[arm].ratings_up, arms[arm].ratings_down = int(up), int(down)

    return ExperimentResults(view, start, end, tuple(arms[a] for a in ARMS))


def _percentiles_in_python(
    session: Session, arms: dict[str, ArmResult], filters: list[ColumnElement[bool]]
) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    ttfts: dict[str, list[float]] = defaultdict(list)
    rows = session.execute(
        select(
            Chat.experiment_arm,
            ProviderUsage.response_time_ms,
            ProviderUsage.time_to_first_token_ms,
        )
        .select_from(ProviderUsage)
        .join(Chat, ProviderUsage.chat_id == Chat.id)
        .where(*filters)
    )
    for arm, response_ms, ttft_ms in rows:
        if response_ms is not None:
            times[arm].append(float(response_ms))
        if ttft_ms is not None:
            ttfts[arm].append(float(ttft_ms))
    for arm, result in arms.items():
        result.response_time_ms_p50 = percentile_cont(times[arm], 0.5)
        result.response_time_ms_p95 = percentile_cont(times[arm], 0.95)
        result.time_to_first_token_ms_p50 = percentile_cont(ttfts[arm], 0.5)
        result.time_to_first_token_ms_p95 = percentile_cont(ttfts[arm], 0.95)
