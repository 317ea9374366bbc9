"""What the admin routes share: the admin-only unit of work and the analytics parameters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.deps import Auth
from api.schemas.admin import UsageAnalyticsReport, UsageGroupRead
from api.schemas.common import ErrorOut
from api.schemas.responses import Responses
from shared.admin.service import require_admin
from shared.models import User
from shared.pricing import format_cost
from shared.usage.analytics import (
    DEFAULT_RANGE,
    GROUP_KEYS,
    UsageGroup,
    UsageQuery,
    build_query,
    parse_group_by,
)

T = TypeVar("T")

FORBIDDEN: Responses = {403: {"model": ErrorOut, "description": "The caller is not an admin"}}
CSV_CONTENT: Responses = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "Groups"}
}


class AdminAuth(Auth):
    """An Auth whose unit of work refuses (403) a caller who is not an admin."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await super().run(_as_admin, fn, *args, **kwargs)


def _as_admin(session: Session, user: User, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    require_admin(user)
    return fn(session, user, *args, **kwargs)


AdminDep = Annotated[AdminAuth, Depends()]

GROUP_BY_HELP = f"Comma-separated, any of: {', '.join(GROUP_KEYS)}"


class AnalyticsParams:
    def __init__(
        self,
        group_by: Annotated[str | None, Query(max_length=100, description=GROUP_BY_HELP)] = None,
        start: Annotated[
            dt.datetime | None,
            Query(alias="from", description="Inclusive; UTC when no offset; default: to - 30 days"),
        ] = None,
        end: Annotated[
            dt.datetime | None, Query(alias="to", description="Exclusive; default: now")
        ] = None,
        provider: Annotated[str | None, Query(max_length=50)] = None,
        model: Annotated[str | None, Query(max_length=100)] = None,
        status: Annotated[Literal["completed", "failed", "cancelled"] | None, Query()] = None,
    ) -> None:
        self.group_by = group_by
        self.start = start
        self.end = end
        self.provider = provider
        self.model = model
        self.status = status

    @property
    def given(self) -> bool:
        """Whether any analytics parameter was sent."""
        return any(
            v is not None
            for v in (self.group_by, self.start, self.end, self.provider, self.model, self.status)
        )

    def query(
        self,
        default_group_by: tuple[str, ...],
        user_id: uuid.UUID | None = None,
        default_range: dt.timedelta = DEFAULT_RANGE,
        order: str | None = None,
        limit: int | None = None,
    ) -> UsageQuery:
        return build_query(
            start=self.start,
            end=self.end,
            group_by=parse_group_by(self.group_by, default_group_by),
            provider=self.provider,
            model=self.model,
            user_id=user_id,
            status=self.status,
            default_range=default_range,
            order=order,
            limit=limit,
        )


AnalyticsParamsDep = Annotated[AnalyticsParams, Depends()]

METRIC_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "error_rate",
    "cancel_rate",
    "response_time_ms_p50",
    "response_time_ms_p95",
    "time_to_first_token_ms_p50",
    "time_to_first_token_ms_p95",
)
KEY_COLUMNS = {
    "user": ("user_id", "user_email"),
    "provider": ("provider",),
    "model": ("model",),
    "day": ("day",),
    "hour": ("hour",),
}


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def analytics_answer(
    request: Request, query: UsageQuery, groups: list[UsageGroup]
) -> UsageAnalyticsReport | Response:
    """JSON, or CSV when the client accepts text/csv: one line per group, same figures."""
    report = UsageAnalyticsReport(
        from_=query.start,
        to=query.end,
        group_by=list(query.group_by),
        data=[UsageGroupRead.model_validate(g, from_attributes=True) for g in groups],
    )
    if not wants_csv(request):
        return report
    columns = [c for k in query.group_by for c in KEY_COLUMNS[k]] + list(METRIC_COLUMNS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for group in report.data:
        values = []
        for column in columns:
            value = getattr(group, column)
            values.append(format_cost(value) if column == "cost" and value is not None else value)
        writer.writerow([_csv_value(v) for v in values])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
