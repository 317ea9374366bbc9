from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from api.schemas.common import JSON_INTEGER, Cost, StrictFloat, StrictModel


class UsageRead(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    # Which counts were estimated because the provider did not report them.
    estimated_fields: list[str] = []


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


class MessageList(BaseModel):
    data: list[MessageRead]
    count: int


class ChatRequest(StrictModel):
    """The plan's ChatRequest. Only `message` is required, as in the Ollama-only API."""

    message: str = Field(min_length=1)
    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, max_length=100)
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: Annotated[int, Field(ge=1, le=200_000), JSON_INTEGER] | None = None


class SubmitAccepted(BaseModel):
    message_id: uuid.UUID
    reply_id: uuid.UUID
    status: str
    provider: str
    model: str
    poll_url: str
    stream_url: str
