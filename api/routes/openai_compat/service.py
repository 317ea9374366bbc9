"""Translating between OpenAI's chat completions format and Switchboard's API calls.

Requests become an `ApiCall` (shared/chats/api_calls.py); stored replies and the reply's
events (api/reply_stream.py) become `chat.completion` objects and `chat.completion.chunk`
lines. Errors take OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so the
openai SDKs raise their own exception classes for them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.limits import BodyTooLarge
from api.reply_stream import reply_events
from api.routes.openai_compat.schemas import ChatCompletionRequest
from api.schemas.messages import MessageRead
from shared.chats.api_calls import ApiCall, ModelNotFound
from shared.chats.selection import InvalidSelection
from shared.chats.submission import QueueUnavailable
from shared.db import DatabaseUnavailable, is_database_unavailable
from shared.errors import AppError, Unauthorized
from shared.providers.base import Message as ProviderMessage
from shared.settings import Settings

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
API_ERROR = "api_error"
RATE_LIMIT = "rate_limit_error"
RETRY_AFTER_SECONDS = "2"

# The roles Switchboard's providers take; `developer` is OpenAI's newer name for `system`.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Provider finish reasons (OpenAI's and Anthropic's names) in OpenAI's vocabulary.
LENGTH_REASONS = frozenset({"length", "max_tokens"})
FILTER_REASONS = frozenset({"content_filter"})
# How pydantic names a union's members in an error's location (`content.str`, `stop.list[str]`).
UNION_MEMBERS = frozenset(
    {"str", "constrained-str", "int", "float", "bool", "list", "dict", "none"}
)


class OpenAIRequestError(Exception):
    """An error to answer in OpenAI's shape, with its own status, type, param and code."""

    def __init__(
        self,
        message: str,
        status_code: int = 400,
        *,
        type_: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    error: OpenAIRequestError, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(error.message, error.type, error.param, error.code),
        status_code=error.status_code,
        headers=(error.headers or {}) | (headers or {}),
    )


# --- requests ---------------------------------------------------------------------------------


def to_api_call(body: ChatCompletionRequest) -> ApiCall:
    """The call to submit, or OpenAIRequestError (400) for what Switchboard cannot do; all
    checked before anything is stored."""
    if body.n is not None and body.n != 1:
        raise OpenAIRequestError("Only n=1 is supported", param="n")
    if "\x00" in body.model:
        raise OpenAIRequestError("'model' must not contain NUL characters", param="model")
    messages = [_message(index, m.role, m.content) for index, m in enumerate(body.messages)]
    max_tokens = body.max_completion_tokens or body.max_tokens
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    if stop and any("\x00" in sequence for sequence in stop):
        raise OpenAIRequestError("'stop' must not contain NUL characters", param="stop")
    return ApiCall(body.model, messages, body.temperature, max_tokens, stop or None)


def _message(index: int, role: str, content: str | list[dict[str, Any]] | None) -> ProviderMessage:
    param = f"messages[{index}]"
    mapped = ROLES.get(role)
    if mapped is None:
        raise OpenAIRequestError(
            f"Messages of role '{role}' are not supported (no tool calls yet)",
            param=f"{param}.role",
        )
    text = _text(param, content)
    if "\x00" in text:
        raise OpenAIRequestError(
            "Message content must not contain NUL characters", param=f"{param}.content"
        )
    return ProviderMessage(role=mapped, content=text)


def _text(param: str, content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type")
            raise OpenAIRequestError(
                f"Content parts of type '{kind}' are not supported: only text parts "
                '({"type": "text", "text": "..."})',
                param=f"{param}.content[{index}]",
            )
        texts.append(part["text"])
    # Separate parts are separate paragraphs to a model: a newline keeps them apart.
    return "\n".join(texts)


# --- errors -----------------------------------------------------------------------------------


def openai_error(exc: Exception) -> OpenAIRequestError | None:
    """What an error raised while handling a /v1 request is in OpenAI's terms; None for a bug
    (the app's own handlers answer it)."""
    if isinstance(exc, OpenAIRequestError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _validation_error(list(exc.errors()))
    if isinstance(exc, Unauthorized):
        return OpenAIRequestError(
            f"{exc.message}: send an sb_ API key as 'Authorization: Bearer sb_...'",
            401,
            code="invalid_api_key",
            headers=exc.headers,
        )
    if isinstance(exc, ModelNotFound | InvalidSelection):
        # InvalidSelection: a virtual model that names nothing usable (an unknown pool).
        return OpenAIRequestError(exc.message, 404, param="model", code="model_not_found")
    if isinstance(exc, QueueUnavailable):
        return OpenAIRequestError(
            exc.message,
            503,
            type_=SERVER_ERROR,
            code="queue_unavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if isinstance(exc, AppError):
        return _app_error(exc)
    if isinstance(exc, BodyTooLarge):
        return OpenAIRequestError(
            f"The request body exceeds {exc.max_bytes} bytes", 413, code="request_too_large"
        )
    if isinstance(exc, StarletteHTTPException):
        return OpenAIRequestError(str(exc.detail), exc.status_code, headers=exc.headers)
    if isinstance(exc, PoolTimeoutError | redis.ConnectionError | redis.TimeoutError) or (
        isinstance(exc, DatabaseUnavailable | DBAPIError) and is_outage(exc)
    ):
        # The type only: a driver's message can name the server or the database user.
        log.warning("service unavailable for /v1: %s", type(exc).__name__)
        return OpenAIRequestError(
            "The service is temporarily unavailable; retry shortly",
            503,
            type_=SERVER_ERROR,
            code="service_unavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    return None


def is_outage(exc: Exception) -> bool:
    return isinstance(exc, DatabaseUnavailable) or is_database_unavailable(exc)


def _app_error(exc: AppError) -> OpenAIRequestError:
    if exc.status_code == 429:
        return OpenAIRequestError(
            exc.message, 429, type_=RATE_LIMIT, code="rate_limit_exceeded", headers=exc.headers
        )
    if exc.status_code >= 500:
        return OpenAIRequestError(
            exc.message, exc.status_code, type_=SERVER_ERROR, headers=exc.headers
        )
    # OpenAI answers 400 where the native API answers 422 (a request it cannot serve).
    status = 400 if exc.status_code == 422 else exc.status_code
    return OpenAIRequestError(exc.message, status, headers=exc.headers)


def _validation_error(errors: list[Any]) -> OpenAIRequestError:
    if not errors:
        return OpenAIRequestError("The request body is invalid")
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid" or not loc:
        return OpenAIRequestError(
            "We could not parse the JSON body of your request: send a JSON object"
        )
    param = _param(loc)
    # Never the input itself: it may be a secret the caller pasted in the wrong field.
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}"
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'"
    return OpenAIRequestError(message, param=param, code="invalid_value")


def _param(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and (part in UNION_MEMBERS or "[" in part):
            continue  # a union member's name, not a field
        else:
            text += f".{part}" if text else str(part)
    return text


# --- responses --------------------------------------------------------------------------------


def completion_id(reply_id: uuid.UUID) -> str:
    return f"chatcmpl-{reply_id.hex}"


def finish_reason(stored: str | None) -> str:
    if stored in LENGTH_REASONS:
        return "length"
    if stored in FILTER_REASONS:
        return "content_filter"
    return "stop"


def usage_out(usage: dict[str, Any] | None) -> dict[str, int]:
    prompt = int(usage["prompt_tokens"]) if usage else 0
    completion = int(usage["completion_tokens"]) if usage else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(reply: MessageRead, model: str, created: int) -> dict[str, Any]:
    """A finished (completed or cancelled) reply as a `chat.completion` object."""
    usage = reply.usage.model_dump() if reply.usage else None
    return {
        "id": completion_id(reply.id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(reply.finish_reason),
            }
        ],
        "usage": usage_out(usage),
    }


def failed_reply_error(reply: MessageRead) -> OpenAIRequestError:
    # 502: the upstream provider failed (every target of the route), not Switchboard.
    return OpenAIRequestError(
        f"The provider failed: {reply.error or 'unknown error'}; the reply is stored: "
        f"GET /messages/{reply.id}",
        502,
        type_=API_ERROR,
        code="provider_error",
    )


def mid_stream_error(reply_id: uuid.UUID, what: str) -> str:
    line = error_body(
        f"{what}; the complete reply is stored: GET /messages/{reply_id}", SERVER_ERROR
    )
    return f"data: {json.dumps(line)}\n\n"


async def completion_chunks(
    request: Request,
    reply_id: uuid.UUID,
    model: str,
    created: int,
    include_usage: bool,
    settings: Settings,
) -> AsyncIterator[str]:
    """The reply's events as `data: {chat.completion.chunk}` lines, then `data: [DONE]`.

    Cheap per token (this path's time to first token is benchmarked): each chunk is one
    json.dumps of a small dict after a prefix serialized once; no database work per chunk.
    """
    head = json.dumps(
        {
            "id": completion_id(reply_id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
    )
    prefix = "data: " + head[:-1] + ', "choices": '

    def chunk(delta: dict[str, str], reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return prefix + json.dumps([choice]) + "}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    sent_text = False
    async for event in reply_events(request, reply_id, "0-0", False, settings):
        kind = event.event
        if kind == "token":
            text = json.loads(event.data)["delta"]
            if text:
                yield chunk({"content": text})
                sent_text = True
        elif kind in ("reset", "restart"):
            if sent_text:
                # The text sent is void, and a chunk cannot take it back.
                yield mid_stream_error(reply_id, "The provider failed mid-stream")
                return
        elif kind == "done":
            data = json.loads(event.data)
            yield chunk({}, finish_reason(data.get("finish_reason")))
            if include_usage:
                usage = json.dumps(usage_out(data.get("usage")))
                yield prefix + '[], "usage": ' + usage + "}\n\n"
            yield "data: [DONE]\n\n"
            return
        elif kind == "error":
            error = json.loads(event.data).get("error") or "unknown error"
            yield mid_stream_error(reply_id, f"The provider failed: {error}")
            return
    # The stream's lifetime passed, or the database could not be read, before the reply ended.
    yield mid_stream_error(reply_id, "The stream ended before the reply did")
