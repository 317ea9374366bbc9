from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import JSON_INTEGER, Cost, StopSequences, StrictFloat, StrictModel
from shared.routing.options import RoutingOptions


class UsageRead(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    # Which counts were estimated because the provider did not report them.
    estimated_fields: list[str] = []


class AttemptRead(BaseModel):
    """One target a reply tried: each is billed on its own usage row."""

    step: int
    provider: str
    model: str
    status: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Cost | None
    time_to_first_token_ms: int | None
    response_time_ms: int | None
    cached: bool


class RouteRead(BaseModel):
    requested: str | None = Field(
        default=None, description="The virtual model asked for (`pool:<name>`, `auto:cheapest`)"
    )
    why: str | None = Field(default=None, description="Why the first target was chosen")
    chain: list[dict[str, str]] = Field(description="The targets, in the order tried")
    cache: bool = False


class MessageRead(BaseModel):
    id: uuid.UUID
    chat_id: uuid.UUID
    role: str
    status: str | None
    content: str
    provider: str | None
    model: str | None
    usage: UsageRead | None
    cost: Cost | None = Field(description="USD; null when the model has no known price")
    error: str | None
    finish_reason: str | None = Field(
        default=None, description="Why the provider stopped (e.g. `stop`, `length`), if it said"
    )
    created_at: datetime
    completed_at: datetime | None
    time_to_first_token_ms: int | None = Field(
        default=None,
        description="Replies: milliseconds from the start of the generation to its first token; "
        "null for "
        "user messages, unfinished replies, and replies that produced no token",
    )
    response_time_ms: int | None = Field(
        default=None,
        description="Replies: milliseconds the generation took; null for user messages and "
        "unfinished replies",
    )
    attempts: list[AttemptRead] = Field(
        default=[],
        description="Replies: each finished attempt, in order (more than one after a "
        "fallback). `cost` above is their sum: every attempt is billed",
    )
    route: RouteRead | None = None
    cached: bool = Field(default=False, description="Served from the response cache")
    rating: int | None = Field(default=None, description="The user's thumbs up (1) or down (-1)")


class MessageList(BaseModel):
    data: list[MessageRead]
    count: int


class ChatRequest(StrictModel):
    """The plan's ChatRequest. Only `message` is required, as in the Ollama-only API."""

    message: str = Field(min_length=1)
    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(
        default=None,
        max_length=100,
        description="A model of the provider, or `pool:<name>` or `auto:cheapest`",
    )
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: Annotated[int, Field(ge=1, le=200_000), JSON_INTEGER] | None = None
    stop: StopSequences | None = Field(
        default=None, description="Up to 4 sequences the reply ends at (not included in it)"
    )
    routing: RoutingOptions | None = Field(
        default=None, description="Overrides the chat's routing options, field by field"
    )


class RatingIn(StrictModel):
    """A thumbs up (1) or down (-1) on a reply; null clears it."""

    # Required, so an empty body is a 422 and not a silent clear; JSON_INTEGER so `true` is
    # refused rather than taken for 1.
    rating: Annotated[Literal[1, -1], JSON_INTEGER] | None = Field(
        description="1, -1, or null to clear the rating"
    )


class SubmitAccepted(BaseModel):
    message_id: uuid.UUID
    reply_id: uuid.UUID
    status: str
    provider: str
    model: str
    poll_url: str
    stream_url: str
