"""Usage analytics: provider_usage grouped by user, provider, model, day or hour, with filters.

Two ways to answer, with the same counts, tokens and costs (sums of the same rows):

* From the rows (provider_usage), aggregated in SQL in one statement. Percentiles are exact:
  PostgreSQL's `percentile_cont`; SQLite, which the dev server runs on, has no such aggregate,
  so there they are computed in Python from the matching rows with the same interpolation.
  Grouping or filtering by user always reads the rows (through the user index): the rollups
  are not kept per user.
* On PostgreSQL, from the hourly and daily rollups plus the rows they do not cover
  (shared/usage/rollup.py), when the range's rolled-up part holds more than
  EXACT_PERCENTILE_ROWS rows. Percentiles then come from latency histograms: within 9.05% of
  the exact value. Below that size reading the rows is fast enough, so they stay exact.

`order` sorts the groups by a figure, largest first (ties: more requests first, then the
group keys); `limit` keeps the first groups (ordered by requests when no `order` is given).
From the rows, a limit picks the top groups first with a plain grouped count (no percentiles),
then computes every figure for those groups only: the top 10 of 10,000 users does not sort
1M latencies into 10,000 percentiles to throw 9,990 away.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from shared.errors import AppError
from shared.models import ProviderUsage, ReplyStatus, User
from shared.usage import rollup

GROUP_KEYS = ("user", "provider", "model", "day", "hour")
STATUSES = tuple(s.value for s in ReplyStatus if s.is_final)
MAX_RANGE = dt.timedelta(days=366)
DEFAULT_RANGE = dt.timedelta(days=30)
# Sorting a month of rows for the percentiles needs more than the default 4 MB; without it the
# sort spills to disk (measured: twice as slow at 300k rows).
ANALYTICS_WORK_MEM = "64MB"
# Up to this many rows, reading them with exact percentiles costs under 20 ms (measured at
# 1M rows: 9 ms for a day's 11,000, 18 ms for 22,000; a rollup report of any range about 8 ms
# plus the merge); beyond it, the rollups answer.
EXACT_PERCENTILE_ROWS = 20_000
PERCENTILES = (0.5, 0.95)
ORDERS = ("requests", "total_tokens", "cost")
MAX_LIMIT = 1000


class InvalidAnalyticsQuery(AppError):
    status_code = 422


@dataclass(slots=True, frozen=True)
class UsageQuery:
    start: dt.datetime
    end: dt.datetime
    group_by: tuple[str, ...]
    provider: str | None = None
    model: str | None = None
    user_id: uuid.UUID | None = None
    status: str | None = None
    order: str | None = None
    limit: int | None = None

    @property
    def sort_by(self) -> str | None:
        """The figure the groups are sorted by: `order`, or requests when only a limit is set."""
        return self.order or ("requests" if self.limit is not None else None)


@dataclass(slots=True)
class UsageGroup:
    user_id: uuid.UUID | None = None
    user_email: str | None = None
    provider: str | None = None
    model: str | None = None
    day: dt.date | None = None
    hour: dt.datetime | None = None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal | None = None
    error_rate: float = 0.0
    cancel_rate: float = 0.0
    response_time_ms_p50: float | None = None
    response_time_ms_p95: float | None = None
    time_to_first_token_ms_p50: float | None = None
    time_to_first_token_ms_p95: float | None = None
    _key: tuple[Any, ...] = field(default=(), repr=False)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_group_by(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return default
    keys = tuple(part.strip() for part in raw.split(","))
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise InvalidAnalyticsQuery(
            f"group_by: unknown key {unknown[0]!r} (allowed: {', '.join(GROUP_KEYS)})"
        )
    if len(set(keys)) != len(keys):
        raise InvalidAnalyticsQuery("group_by: a key is repeated")
    return keys


def build_query(
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    group_by: tuple[str, ...],
    provider: str | None = None,
    model: str | None = None,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    default_range: dt.timedelta = DEFAULT_RANGE,
    now: dt.datetime | None = None,
    order: str | None = None,
    limit: int | None = None,
) -> UsageQuery:
    """The checked query: `to` defaults to now, `from` to 30 days before `to` (UTC)."""
    try:
        end_at = _utc(end) if end is not None else (now or dt.datetime.now(dt.UTC))
        start_at = _utc(start) if start is not None else end_at - default_range
    except OverflowError:
        # 0001-01-01 with a positive offset, or 9999-12-31 with a negative one, is not a
        # time in UTC (nor is a default start before year 1).
        raise InvalidAnalyticsQuery(
            "'from' and 'to' must be times within years 1 to 9999 in UTC"
        ) from None
    if start_at >= end_at:
        raise InvalidAnalyticsQuery("'from' must be before 'to'")
    if end_at - start_at > MAX_RANGE:
        raise InvalidAnalyticsQuery("the date range is at most 366 days")
    if status is not None and status not in STATUSES:
        raise InvalidAnalyticsQuery(f"status: one of {', '.join(STATUSES)}")
    if order is not None and order not in ORDERS:
        raise InvalidAnalyticsQuery(f"order: one of {', '.join(ORDERS)}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidAnalyticsQuery(f"limit: between 1 and {MAX_LIMIT}")
    return UsageQuery(start_at, end_at, group_by, provider, model, user_id, status, order, limit)


def _key_columns(dialect: str) -> dict[str, ColumnElement[Any]]:
    created = ProviderUsage.created_at
    if dialect == "postgresql":
        utc = created.op("AT TIME ZONE")(literal_column("'UTC'"))
        day = func.date_trunc("day", utc)
        hour = func.date_trunc("hour", utc)
    else:  # SQLite stores UTC timestamps as ISO text
        day = func.strftime("%Y-%m-%d", created)
        hour = func.strftime("%Y-%m-%d %H:00:00", created)
    return {
        "user": ProviderUsage.user_id,
        "provider": ProviderUsage.provider_name,
        "model": ProviderUsage.model_name,
        "day": day,
        "hour": hour,
    }


def _filters(query: UsageQuery) -> list[ColumnElement[bool]]:
    conditions = [ProviderUsage.created_at >= query.start, ProviderUsage.created_at < query.end]
    if query.provider is not None:
        conditions.append(ProviderUsage.provider_name == query.provider)
    if query.model is not None:
        conditions.append(ProviderUsage.model_name == query.model)
    if query.user_id is not None:
        conditions.append(ProviderUsage.user_id == query.user_id)
    if query.status is not None:
        conditions.append(ProviderUsage.status == query.status)
    return conditions


def _as_date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _as_hour(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value))
    return value.replace(tzinfo=dt.UTC)


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


class UsageAnalytics:
    def __init__(self, exact_percentile_rows: int = EXACT_PERCENTILE_ROWS) -> None:
        self.exact_percentile_rows = exact_percentile_rows

    def report(self, session: Session, query: UsageQuery) -> list[UsageGroup]:
        dialect = session.get_bind().dialect.name
        groups = None
        if dialect == "postgresql" and "user" not in query.group_by and query.user_id is None:
            groups = self._from_rollups(session, query)
        if groups is None:
            groups = self._from_rows(session, query, dialect)
        return _sorted_and_limited(groups, query)

    def _from_rollups(self, session: Session, query: UsageQuery) -> list[UsageGroup] | None:
        """The rollup answer, or None when the rows are the better one (see the module doc)."""
        marks = rollup.watermarks(session)
        if marks.due:
            rollup.advance(session.get_bind())
            marks = rollup.watermarks(session)
        layout = rollup.plan(query.start, query.end, marks, by_hour="hour" in query.group_by)
        if layout is None or rollup.covered_rows(session, layout) <= self.exact_percentile_rows:
            return None
        filters = rollup.Filters(query.provider, query.model, query.status)
        groups = []
        for merged in rollup.report_groups(session, query.group_by, filters, layout):
            if merged.requests == 0:
                continue
            keys = dict(zip(query.group_by, merged.key, strict=False))
            rt50, rt95 = rollup.histogram_percentiles(merged.response_ms, PERCENTILES)
            tt50, tt95 = rollup.histogram_percentiles(merged.ttft_ms, PERCENTILES)
            groups.append(
                UsageGroup(
                    provider=keys.get("provider"),
                    model=keys.get("model"),
                    day=_as_date(keys.get("day")),
                    hour=_as_hour(keys.get("hour")),
                    requests=merged.requests,
                    prompt_tokens=merged.prompt_tokens,
                    completion_tokens=merged.completion_tokens,
                    total_tokens=merged.prompt_tokens + merged.completion_tokens,
                    cost=merged.cost if merged.priced else None,
                    error_rate=merged.failed / merged.requests,
                    cancel_rate=merged.cancelled / merged.requests,
                    response_time_ms_p50=rt50,
                    response_time_ms_p95=rt95,
                    time_to_first_token_ms_p50=tt50,
                    time_to_first_token_ms_p95=tt95,
                )
            )
        return groups

    def _from_rows(self, session: Session, query: UsageQuery, dialect: str) -> list[UsageGroup]:
        keys = _key_columns(dialect)
        group_columns = [keys[k].label(f"key_{k}") for k in query.group_by]
        prompt = func.coalesce(func.sum(ProviderUsage.prompt_tokens), 0)
        completion = func.coalesce(func.sum(ProviderUsage.completion_tokens), 0)
        filters = _filters(query)
        if query.limit is not None and query.group_by:
            top = self._top_keys(session, query, keys, prompt + completion)
            if not top:
                return []
            filters.append(_key_in(query, keys, top))

        measures: list[ColumnElement[Any]] = [
            func.count().label("requests"),
            prompt.label("prompt_tokens"),
            completion.label("completion_tokens"),
            func.sum(ProviderUsage.cost).label("cost"),
            func.count().filter(ProviderUsage.status == ReplyStatus.failed.value).label("failed"),
            func.count()
            .filter(ProviderUsage.status == ReplyStatus.cancelled.value)
            .label("cancelled"),
        ]
        postgres = dialect == "postgresql"
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
            session.execute(text(f"SET LOCAL work_mem = '{ANALYTICS_WORK_MEM}'"))
        statement = select(*group_columns, *measures).where(*filters)
        if group_columns:
            statement = statement.group_by(*group_columns).order_by(*group_columns)
        groups: list[UsageGroup] = []
        for row in session.execute(statement).mappings():
            requests = int(row["requests"])
            if requests == 0:  # no grouping and no rows: no group either
                continue
            group = UsageGroup(
                user_id=row.get("key_user"),
                provider=row.get("key_provider"),
                model=row.get("key_model"),
                day=_as_date(row.get("key_day")),
                hour=_as_hour(row.get("key_hour")),
                requests=requests,
                prompt_tokens=int(row["prompt_tokens"]),
                completion_tokens=int(row["completion_tokens"]),
                total_tokens=int(row["prompt_tokens"]) + int(row["completion_tokens"]),
                cost=Decimal(row["cost"]) if row["cost"] is not None else None,
                error_rate=int(row["failed"]) / requests,
                cancel_rate=int(row["cancelled"]) / requests,
                _key=tuple(row[f"key_{k}"] for k in query.group_by),
            )
            if postgres:
                rt, ttft = row["response_time"], row["ttft"]
                group.response_time_ms_p50, group.response_time_ms_p95 = _pair(rt)
                group.time_to_first_token_ms_p50, group.time_to_first_token_ms_p95 = _pair(ttft)
            groups.append(group)
        if not postgres:
            self._percentiles_in_python(session, query, keys, groups, filters)
        self._attach_emails(session, groups)
        return groups

    def _top_keys(
        self,
        session: Session,
        query: UsageQuery,
        keys: dict[str, ColumnElement[Any]],
        total_tokens: ColumnElement[Any],
    ) -> list[tuple[Any, ...]]:
        """The keys of the first `limit` groups by `sort_by`, from a grouped count alone."""
        columns = [keys[k] for k in query.group_by]
        figure = {
            "requests": func.count(),
            "total_tokens": total_tokens,
            "cost": func.sum(ProviderUsage.cost),
        }[query.sort_by or "requests"]
        statement = (
            select(*columns)
            .where(*_filters(query))
            .group_by(*columns)
            .order_by(figure.desc().nulls_last(), func.count().desc(), *columns)
            .limit(query.limit)
        )
        return [tuple(row) for row in session.execute(statement)]

    def _percentiles_in_python(
        self,
        session: Session,
        query: UsageQuery,
        keys: dict[str, ColumnElement[Any]],
        groups: list[UsageGroup],
        filters: list[ColumnElement[bool]],
    ) -> None:
        by_key = {g._key: g for g in groups}
        times: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        ttfts: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        rows = session.execute(
            select(
                *(keys[k] for k in query.group_by),
                ProviderUsage.response_time_ms,
                ProviderUsage.time_to_first_token_ms,
            ).where(*filters)
        )
        width = len(query.group_by)
        for row in rows:
            key = tuple(row[:width])
            if row[width] is not None:
                times[key].append(float(row[width]))
            if row[width + 1] is not None:
                ttfts[key].append(float(row[width + 1]))
        for key, group in by_key.items():
            group.response_time_ms_p50 = percentile_cont(times[key], 0.5)
            group.response_time_ms_p95 = percentile_cont(times[key], 0.95)
            group.time_to_first_token_ms_p50 = percentile_cont(ttfts[key], 0.5)
            group.time_to_first_token_ms_p95 = percentile_cont(ttfts[key], 0.95)

    def _attach_emails(self, session: Session, groups: list[UsageGroup]) -> None:
        ids = {g.user_id for g in groups if g.user_id is not None}
        if not ids:
            return
        emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())
        for group in groups:
            if group.user_id is not None:
                group.user_email = emails.get(group.user_id)


def _key_in(
    query: UsageQuery, keys: dict[str, ColumnElement[Any]], top: list[tuple[Any, ...]]
) -> ColumnElement[bool]:
    """The rows of the groups in `top`. A key may be null (the rows of deleted users), which IN
    never matches: those groups are matched with IS NULL."""
    columns = [keys[k] for k in query.group_by]
    plain = [key for key in top if None not in key]
    conditions: list[ColumnElement[bool]] = []
    if plain and len(columns) == 1:
        conditions.append(columns[0].in_([key[0] for key in plain]))
    elif plain:
        conditions.append(tuple_(*columns).in_(plain))
    for key in top:
        if None in key:
            conditions.append(
                and_(
                    *(
                        c.is_(None) if v is None else c == v
                        for c, v in zip(columns, key, strict=True)
                    )
                )
            )
    return or_(*conditions)


def _sort_figure(group: UsageGroup, figure: str) -> Decimal | int | None:
    if figure == "requests":
        return group.requests
    if figure == "total_tokens":
        return group.total_tokens
    return group.cost


def _sorted_and_limited(groups: list[UsageGroup], query: UsageQuery) -> list[UsageGroup]:
    """Largest `sort_by` first (unpriced last for cost), then more requests; groups that tie
    on both keep the order they came in (by their keys). Then the first `limit`."""
    figure = query.sort_by
    if figure is None:
        return groups
    ranked = sorted(
        enumerate(groups),
        key=lambda item: (
            _sort_figure(item[1], figure) is None,
            -(_sort_figure(item[1], figure) or 0),
            -item[1].requests,
            item[0],
        ),
    )
    ordered = [group for _, group in ranked]
    return ordered if query.limit is None else ordered[: query.limit]


def _pair(values: Sequence[float] | None) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return values[0], values[1]


usage_analytics = UsageAnalytics()
