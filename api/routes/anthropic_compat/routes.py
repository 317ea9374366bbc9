"""`POST /v1/messages`: Anthropic's Messages API, streaming and not.

Errors of this route only are answered in Anthropic's shape (`AnthropicRoute`): the native
API's handlers in api/errors.py stay as they are for every other route.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.compat_route import error_mapping_route
from api.deps import Auth, SettingsDep, oauth2_scheme, run_in_session
from api.reply_stream import (
    REPLY_ID_HEADER,
    STREAM_HEADERS,
    Waited,
    read_view,
    stored_view,
    wait_for_terminal,
)
from api.routes.anthropic_compat.schemas import MessagesRequest
from api.routes.anthropic_compat.service import (
    anthropic_messages_service,
    error_body,
    error_type,
    failure_message,
    final_message,
    is_failed,
    stored_at,
    stream_events,
)
from shared.chats.submission import QueueUnavailable
from shared.db import DatabaseUnavailable, is_database_unavailable
from shared.errors import AppError
from workers.celery_app import enqueue_generation

log = logging.getLogger(__name__)

# The anthropic SDK retries 5xx answers unless told not to: a reply that is still generating
# (or failed) is stored, and a retry would only start another one.
NO_RETRY = {"x-should-retry": "false"}


def anthropic_error(
    status_code: int, message: str, kind: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(kind or error_type(status_code), message),
        status_code=status_code,
        headers=headers,
    )


def _validation_message(exc: RequestValidationError) -> str:
    # Where and what, never the input: it may hold the caller's key or text.
    parts = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "Invalid request body"


def error_response(exc: Exception) -> JSONResponse | None:
    """Anthropic's answer for an error the native handlers know; None for the others."""
    if isinstance(exc, RequestValidationError):
        return anthropic_error(400, _validation_message(exc))
    if isinstance(exc, QueueUnavailable):
        return anthropic_error(503, exc.message, "overloaded_error", exc.headers)
    if isinstance(exc, AppError):
        return anthropic_error(exc.status_code, exc.message, headers=exc.headers)
    if isinstance(exc, StarletteHTTPException):
        return anthropic_error(exc.status_code, str(exc.detail), headers=exc.headers)
    if isinstance(exc, PoolTimeoutError):
        return anthropic_error(503, "The service is busy; retry shortly", "overloaded_error")
    if isinstance(exc, DatabaseUnavailable) or (
        isinstance(exc, DBAPIError) and is_database_unavailable(exc)
    ):
        log.warning("database unavailable: %s", type(exc).__name__)
        return anthropic_error(
            503, "The database is unavailable; retry shortly", "api_error", {"Retry-After": "2"}
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        log.warning("redis unavailable: %s", type(exc).__name__)
        message = "The token channel is unavailable; retry shortly"
        return anthropic_error(503, message, "api_error", {"Retry-After": "2"})
    return None


# Errors of this route only (body validation and authentication included, which happen
# inside the route handler) are answered in Anthropic's shape.
AnthropicRoute = error_mapping_route(error_response)


class AnthropicAuth(Auth):
    """The caller's `sb_` key from `x-api-key` (what the anthropic SDK sends) or a bearer
    token; either goes through the same check as every other route's credential."""

    def __init__(
        self,
        settings: SettingsDep,
        token: Annotated[str | None, Depends(oauth2_scheme)],
        x_api_key: Annotated[str | None, Header(description="An `sb_` API key")] = None,
    ) -> None:
        super().__init__(settings, x_api_key or token)


AnthropicAuthDep = Annotated[AnthropicAuth, Depends()]

router = APIRouter(tags=["anthropic-compatible"], route_class=AnthropicRoute)

ERROR_RESPONSE = {
    "content": {"application/json": {"example": error_body("invalid_request_error", "...")}}
}


@router.post(
    "/v1/messages",
    responses={
        200: {
            "description": "The message; with `stream: true`, Anthropic's Server-Sent Events "
            "(message_start, content_block_start, ping, content_block_delta, "
            "content_block_stop, message_delta, message_stop; `error` on failure). The reply "
            "id is in the `x-switchboard-reply-id` header",
            "content": {"text/event-stream": {}},
        },
        400: {"description": "invalid_request_error", **ERROR_RESPONSE},
        401: {"description": "authentication_error", **ERROR_RESPONSE},
        404: {"description": "not_found_error: no such model", **ERROR_RESPONSE},
        502: {"description": "api_error: the generation failed (stored)", **ERROR_RESPONSE},
        503: {"description": "overloaded_error: the queue is down; api_error", **ERROR_RESPONSE},
        504: {"description": "timeout_error: still generating (stored)", **ERROR_RESPONSE},
    },
)
async def create_message(
    body: MessagesRequest,
    request: Request,
    auth: AnthropicAuthDep,
    anthropic_version: Annotated[str | None, Header(description="Accepted, ignored")] = None,
) -> Any:
    submitted = await auth.run(
        anthropic_messages_service.submit, auth.settings, body, enqueue_generation
    )
    reply_id = submitted.reply_id
    reply_header = {REPLY_ID_HEADER: str(reply_id)}
    if body.stream:
        return StreamingResponse(
            stream_events(request, reply_id, body.model, auth.settings, body.stop_sequences),
            media_type="text/event-stream",
            headers=STREAM_HEADERS | reply_header,
        )
    outcome = await wait_for_terminal(request, reply_id, auth.settings)
    if outcome is Waited.final:
        view = await run_in_session(stored_view, reply_id)
        if view is not None:
            reply = read_view(view)
            if is_failed(reply):
                return anthropic_error(
                    502, failure_message(reply), "api_error", NO_RETRY | reply_header
                )
            return JSONResponse(
                final_message(reply, body.model, body.stop_sequences), headers=reply_header
            )
    if outcome is Waited.gone or outcome is Waited.final:  # final but deleted since
        return anthropic_error(404, "The chat was deleted", headers=reply_header)
    pending = f"The reply is still generating; {stored_at(reply_id)}"
    return anthropic_error(504, pending, headers=NO_RETRY | reply_header)
