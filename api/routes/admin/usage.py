from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.routes.admin.common import CSV_CONTENT, AdminDep, AnalyticsParamsDep, analytics_answer
from api.schemas.admin import UsageAnalyticsReport
from shared.admin.usage import admin_usage_report

router = APIRouter(tags=["admin"])


@router.get("/usage", response_model=UsageAnalyticsReport, responses=CSV_CONTENT)
async def read_usage(
    request: Request,
    auth: AdminDep,
    params: AnalyticsParamsDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
) -> UsageAnalyticsReport | Response:
    """Every user's usage grouped by any of user, provider, model, day, hour: requests, tokens,
    cost, error and cancel rates, p50/p95 latency and time to first token. CSV with
    `Accept: text/csv`."""
    query = params.query(default_group_by=("day",), user_id=user_id)
    groups = await auth.run(admin_usage_report, query)
    return analytics_answer(request, query, groups)
