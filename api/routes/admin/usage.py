from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.routes.admin.common import CSV_CONTENT, AdminDep, AnalyticsParamsDep, analytics_answer
from api.schemas.admin import UsageAnalyticsReport
from shared.admin.usage import admin_usage_report
from shared.usage.analytics import MAX_LIMIT

router = APIRouter(tags=["admin"])


@router.get("/usage", response_model=UsageAnalyticsReport, responses=CSV_CONTENT)
async def read_usage(
    request: Request,
    auth: AdminDep,
    params: AnalyticsParamsDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
    order: Annotated[
        Literal["requests", "total_tokens", "cost"] | None,
        Query(description="Sort the groups by this figure, largest first"),
    ] = None,
    limit: Annotated[
        int | None,
        Query(ge=1, le=MAX_LIMIT, description="Only the first groups (by `order`, else requests)"),
    ] = None,
) -> UsageAnalyticsReport | Response:
    """Every user's usage grouped by any of user, provider, model, day, hour: requests, tokens,
    cost, error and cancel rates, p50/p95 latency and time to first token. `order` and `limit`
    give the top groups (e.g. the 10 users who cost most). CSV with `Accept: text/csv`."""
    query = params.query(default_group_by=("day",), user_id=user_id, order=order, limit=limit)
    groups = await auth.run(admin_usage_report, query)
    return analytics_answer(request, query, groups)
