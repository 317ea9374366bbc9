"""OpenAI's request and error bodies, as far as Switchboard reads them.

Unknown fields are ignored, not refused: OpenAI clients send many (`logprobs`, `seed`,
`parallel_tool_calls`, ...), and a gateway that refused them would break those clients.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import JSON_INTEGER, StopSequence, StopSequences, StrictBool, StrictFloat

MAX_MODEL_CHARS = 200
MAX_TOKENS_LIMIT = 200_000


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessageIn(Lenient):
    # `developer` is what newer OpenAI clients call the system message; `tool` and `function`
    # messages exist in OpenAI's format but are refused in the service (no tool calls yet).
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A string, or content parts; only `{"type": "text", "text": ...}` parts are understood
    # (checked in the service, so the error can name the part). Null for an assistant message
    # that only called tools.
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(Lenient):
    include_usage: StrictBool | None = False


PositiveTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT), JSON_INTEGER]


class ChatCompletionRequest(Lenient):
    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS)
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: PositiveTokens | None = None
    max_completion_tokens: PositiveTokens | None = None
    stop: StopSequence | StopSequences | None = None
    user: str | None = None  # accepted and ignored: the caller is the credential's user
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, JSON_INTEGER] | None = None


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    error: OpenAIError


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]
