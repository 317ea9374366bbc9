from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, Field

from api.schemas.common import Cost


class ProviderInfo(BaseModel):
    """The plan's ProviderInfo."""

    name: str
    display_name: str | None
    models: list[str]
    is_enabled: bool
    default_model: str | None
    is_demo: bool
    unavailable_reason: str | None = Field(
        default=None,
        description="Null when a submission to the provider would be accepted; else why not "
        "(e.g. `disabled by an admin`, `no API key`, `no enabled models`)",
    )


class VirtualModelInfo(BaseModel):
    model: str = Field(description="What to send as `model`: `pool:<name>` or `auto:cheapest`")
    kind: str = Field(description="`pool` (weighted deployments) or `cost` (cheapest that fits)")
    description: str
    targets: int = Field(description="How many enabled provider/model targets it routes to now")


class ModelInfo(BaseModel):
    id: str
    is_default: bool
    input_cost_per_1k_tokens: Decimal | None
    output_cost_per_1k_tokens: Decimal | None


class UsageRow(BaseModel):
    day: dt.date
    provider: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Cost | None


class UsageReport(BaseModel):
    since: dt.date
    data: list[UsageRow]
