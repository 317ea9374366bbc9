from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import AuthDep, current_user
from api.routes.admin.common import CSV_CONTENT, AnalyticsParamsDep, analytics_answer
from api.schemas.admin import UsageAnalyticsReport
from api.schemas.providers import (
    ModelInfo,
    ProviderInfo,
    UsageReport,
    UsageRow,
    VirtualModelInfo,
)
from api.schemas.responses import AUTHENTICATED, not_found
from shared.errors import NotFound
from shared.providers.availability import provider_availability
from shared.providers.directory import current_catalog
from shared.routing.virtual import virtual_models
from shared.usage.service import usage_service

router = APIRouter(tags=["providers"], responses=AUTHENTICATED)


@router.get("/providers", response_model=list[ProviderInfo])
async def list_providers(auth: AuthDep) -> list[ProviderInfo]:
    """Every provider this deployment knows, disabled ones included, with its allowed models;
    `unavailable_reason` says why a submission to it would be refused (null: accepted)."""
    await auth.run(current_user)
    catalog = current_catalog(auth.settings)
    return [
        ProviderInfo(
            name=name,
            display_name=config.display_name,
            models=list(config.models),
            is_enabled=config.enabled,
            default_model=config.default_model,
            is_demo=config.adapter == "echo",
            unavailable_reason=provider_availability(catalog, name).reason,
        )
        for name, config in catalog.configs.items()
    ]


@router.get("/routes", response_model=list[VirtualModelInfo])
async def list_routes(auth: AuthDep) -> list[VirtualModelInfo]:
    """The virtual models this deployment offers: its pools, and `auto:cheapest` when some
    enabled model has a price (docs/providers/routing.md)."""
    await auth.run(current_user)
    catalog = current_catalog(auth.settings)
    return [
        VirtualModelInfo(model=v.model, kind=v.kind, description=v.description, targets=v.targets)
        for v in virtual_models(catalog, auth.settings.DEFAULT_CONTEXT_TOKENS)
    ]


@router.get(
    "/providers/{provider}/models", response_model=list[ModelInfo], responses=not_found("provider")
)
async def list_provider_models(provider: str, auth: AuthDep) -> list[ModelInfo]:
    await auth.run(current_user)
    catalog = current_catalog(auth.settings)
    config = catalog.configs.get(provider)
    if config is None:
        raise NotFound(f"Unknown provider '{provider}'")
    models = []
    for model in config.models:
        price = catalog.price(provider, model)
        models.append(
            ModelInfo(
                id=model,
                is_default=model == config.default_model,
                input_cost_per_1k_tokens=price.input_per_1k if price else None,
                output_cost_per_1k_tokens=price.output_per_1k if price else None,
            )
        )
    return models


@router.get(
    "/usage",
    response_model=UsageReport | UsageAnalyticsReport,
    tags=["usage"],
    responses=CSV_CONTENT,
)
async def read_usage(
    request: Request,
    auth: AuthDep,
    params: AnalyticsParamsDep,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back")] = 30,
) -> UsageReport | UsageAnalyticsReport | Response:
    """Your requests, tokens and cost per day, provider and model (cost null when unpriced).

    With any of `group_by`, `from`, `to`, `provider`, `model` or `status`, the report of
    `GET /admin/usage` for your own rows instead (rates, percentiles; CSV with
    `Accept: text/csv`), grouped by day, provider and model unless `group_by` says otherwise.
    """
    if params.given:
        query = params.query(
            default_group_by=("day", "provider", "model"), default_range=dt.timedelta(days=days)
        )
        groups = await auth.run(usage_service.analytics, query)
        return analytics_answer(request, query, groups)
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days - 1)
    rows = await auth.run(usage_service.daily, since=since)
    return UsageReport(
        since=since, data=[UsageRow.model_validate(r, from_attributes=True) for r in rows]
    )
