from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Cost, StrictBool, StrictModel


class UsageTotalsRead(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Cost | None


class AdminUserRead(BaseModel):
    id: uuid.UUID
    email: str
    is_admin: bool
    is_active: bool
    created_at: dt.datetime
    usage: UsageTotalsRead


class AdminUserList(BaseModel):
    data: list[AdminUserRead]
    count: int


class AdminUserUpdate(StrictModel):
    is_admin: StrictBool | None = None
    is_active: StrictBool | None = None


class UsageGroupRead(BaseModel):
    """One group; the key fields not in group_by are null."""

    user_id: uuid.UUID | None = None
    user_email: str | None = None
    provider: str | None = None
    model: str | None = None
    day: dt.date | None = None
    hour: dt.datetime | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Cost | None
    error_rate: float
    cancel_rate: float
    response_time_ms_p50: float | None
    response_time_ms_p95: float | None
    time_to_first_token_ms_p50: float | None
    time_to_first_token_ms_p95: float | None


class UsageAnalyticsReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.datetime = Field(alias="from")
    to: dt.datetime
    group_by: list[str]
    data: list[UsageGroupRead]
