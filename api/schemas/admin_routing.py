"""Bodies and answers of /admin/routing: fallback chains, pools and A/B experiments."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.admin_providers import PROVIDER_NAME_PATTERN, ModelName
from api.schemas.common import JSON_INTEGER, Cost, StrictBool, StrictFloat, StrictModel
from shared.admin.routing import MAX_CHAIN_TARGETS, MAX_POOL_DEPLOYMENTS, MAX_WEIGHT

ProviderName = Annotated[str, Field(pattern=PROVIDER_NAME_PATTERN)]
Weight = Annotated[int, Field(ge=1, le=MAX_WEIGHT), JSON_INTEGER]
Share = Annotated[StrictFloat, Field(ge=0, le=1)]
ExperimentName = Annotated[str, Field(min_length=1, max_length=100)]


class TargetIn(StrictModel):
    provider: ProviderName
    model: ModelName


class TargetRead(BaseModel):
    provider: str
    model: str
    usable: bool = Field(description="An enabled provider and model now (else passed over)")


# -- chains -----------------------------------------------------------------------------------


class ChainPut(StrictModel):
    targets: list[TargetIn] = Field(
        min_length=1,
        max_length=MAX_CHAIN_TARGETS,
        description="Tried in this order after the primary; neither the primary nor twice",
    )


class ChainRead(BaseModel):
    provider: str = Field(description="The primary's provider")
    model: str = Field(description="The primary's model")
    targets: list[TargetRead]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class ChainList(BaseModel):
    data: list[ChainRead]
    count: int


# -- pools ------------------------------------------------------------------------------------


class DeploymentIn(StrictModel):
    provider: ProviderName
    model: ModelName
    weight: Weight = 1
    is_enabled: StrictBool = True


class PoolPut(StrictModel):
    deployments: list[DeploymentIn] = Field(min_length=1, max_length=MAX_POOL_DEPLOYMENTS)


class DeploymentRead(BaseModel):
    provider: str
    model: str
    weight: int
    is_enabled: bool
    usable: bool = Field(description="Enabled here, and an enabled provider and model now")
    cooling_down: bool | None = Field(description="Passed over after failures; null: unknown")
    weight_factor: float | None = Field(
        description="0 while cooling down, below 1 while its rate limit runs low, else 1; "
        "null: unknown (Redis unavailable)"
    )


class PoolRead(BaseModel):
    name: str
    model: str = Field(description="What clients ask for: pool:<name>")
    deployments: list[DeploymentRead]


class PoolList(BaseModel):
    data: list[PoolRead]
    count: int


# -- experiments ------------------------------------------------------------------------------


class ExperimentCreate(StrictModel):
    name: ExperimentName
    control: TargetIn
    variant: TargetIn
    variant_share: Share = Field(default=0.5, description="The share of new chats sent to it")
    is_active: StrictBool = True


class ExperimentUpdate(StrictModel):
    """Only the fields sent change. The targets are fixed: create another experiment."""

    name: ExperimentName | None = None
    variant_share: Share | None = None
    is_active: StrictBool | None = None


class ExperimentRead(BaseModel):
    id: int
    name: str
    is_active: bool
    control: TargetRead
    variant: TargetRead
    variant_share: float
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class ExperimentList(BaseModel):
    data: list[ExperimentRead]
    count: int


class ArmRead(BaseModel):
    arm: str = Field(description="control or variant")
    provider: str
    model: str
    chats: int
    requests: int = Field(description="Attempts: a reply that fell back counts each")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Cost | None = Field(description="null: no priced request")
    failed: int
    error_rate: float = Field(description="failed / requests")
    cached_requests: int
    response_time_ms_p50: float | None
    response_time_ms_p95: float | None
    time_to_first_token_ms_p50: float | None
    time_to_first_token_ms_p95: float | None
    ratings_up: int
    ratings_down: int


class ExperimentResultsRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    experiment: ExperimentRead
    from_: dt.datetime | None = Field(alias="from")
    to: dt.datetime | None
    arms: list[ArmRead] = Field(description="control, then variant")
