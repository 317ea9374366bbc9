"""Request bodies of `POST /v1/messages`, as Anthropic's Messages API defines them.

Unknown fields are refused (Anthropic's API refuses them too): a `tools` or `top_k` the
gateway cannot honour must not be dropped silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import JSON_INTEGER, StopSequences, StrictFloat, StrictModel


class ContentBlock(BaseModel):
    """One block of a message's content. Only `text` blocks can be sent (the service refuses
    the others with a clear message); `cache_control` and the like are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=100)
    text: str | None = None


Content = str | list[ContentBlock]


class InputMessage(StrictModel):
    role: Literal["user", "assistant"]
    content: Content


class MessagesRequest(StrictModel):
    model: str = Field(min_length=1, max_length=200)
    max_tokens: Annotated[int, Field(ge=1, le=200_000), JSON_INTEGER]
    messages: list[InputMessage] = Field(min_length=1)
    system: Content | None = None
    # Anthropic's range (OpenAI's reaches 2).
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=1.0)
    stop_sequences: StopSequences | None = None
    stream: bool = Field(default=False, strict=True)
    metadata: dict[str, Any] | None = None  # accepted, ignored (Anthropic's `user_id`)
