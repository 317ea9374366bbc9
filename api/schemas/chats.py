from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from api.schemas.common import ReadModel, StrictBool, StrictModel
from shared.routing.options import RoutingOptions


class ChatCreate(StrictModel):
    title: str | None = Field(default=None, max_length=200)
    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(
        default=None,
        max_length=100,
        description="A model of the provider, or `pool:<name>` or `auto:cheapest`",
    )
    system_prompt_id: uuid.UUID | None = None
    routing: RoutingOptions | None = None


class ChatUpdate(StrictModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, max_length=100)
    system_prompt_id: uuid.UUID | None = None
    routing: RoutingOptions | None = None


class ChatRead(ReadModel):
    id: uuid.UUID
    title: str
    provider_name: str | None
    model_name: str | None
    system_prompt_id: uuid.UUID | None
    routing: RoutingOptions | None = None
    kind: str = Field(default="chat", description="`chat`, or `api` for a call to a compatible API")
    experiment_arm: str | None = Field(
        default=None, description="The A/B arm (`control` or `variant`) this chat is in, if any"
    )
    created_at: datetime
    updated_at: datetime


class ChatList(ReadModel):
    data: list[ChatRead]
    count: int


class SystemPromptCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=100_000)
    is_default: StrictBool = False


class SystemPromptUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    content: str | None = Field(default=None, min_length=1, max_length=100_000)
    is_default: StrictBool | None = None


class SystemPromptRead(ReadModel):
    id: uuid.UUID
    name: str
    content: str
    is_default: bool
    created_at: datetime
    updated_at: datetime


class SystemPromptList(ReadModel):
    data: list[SystemPromptRead]
    count: int
