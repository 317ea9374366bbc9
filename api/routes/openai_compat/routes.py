"""`POST /v1/chat/completions` and `GET /v1/models` in OpenAI's wire format.

Every error raised while handling these routes (credentials, validation, the queue) answers in
OpenAI's error shape: `OpenAIRoute` catches it around the route's handler (which is where
FastAPI resolves the dependencies and validates the body), so the native API's handlers and
error shape (api/errors.py) stay as they are for every other path.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.compat_route import error_mapping_route
from api.deps import AuthDep, current_user, run_in_session
from api.reply_stream import (
    DELETED_ERROR,
    REPLY_ID_HEADER,
    STREAM_HEADERS,
    Waited,
    read_view,
    stored_view,
    wait_for_terminal,
)
from api.routes.openai_compat.schemas import (
    ChatCompletionRequest,
    ModelList,
    ModelOut,
    OpenAIErrorOut,
)
from api.routes.openai_compat.service import (
    SERVER_ERROR,
    OpenAIRequestError,
    completion,
    completion_chunks,
    error_response,
    failed_reply_error,
    openai_error,
    to_api_call,
)
from shared.chats.api_calls import api_call_service, model_ids
from shared.models import ReplyStatus
from shared.providers.directory import current_catalog
from shared.routing.virtual import virtual_models
from workers.celery_app import enqueue_generation

VIRTUAL_OWNER = "switchboard"


def _openai_response(exc: Exception) -> Response | None:
    error = openai_error(exc)
    return error_response(error) if error is not None else None


OpenAIRoute = error_mapping_route(_openai_response)


def _error(description: str) -> dict[str, Any]:
    return {"model": OpenAIErrorOut, "description": description}


ERRORS = {
    401: _error("Missing or invalid credentials (code `invalid_api_key`)"),
    503: _error("The queue or the database is unavailable; retry after Retry-After seconds"),
}

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses=ERRORS)


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "A `chat.completion` object, or with `stream: true` its "
            "`chat.completion.chunk` events; the reply's id is in `x-switchboard-reply-id`",
            "content": {"text/event-stream": {}},
        },
        400: _error("A body Switchboard cannot read or serve (`invalid_request_error`)"),
        404: _error("No such model (code `model_not_found`), or the chat was deleted"),
        413: _error("The body exceeds MAX_REQUEST_BODY_BYTES"),
        422: _error("Not answered: body errors are 400s here, as OpenAI's are"),
        429: _error("Rate limited (`rate_limit_error`)"),
        502: _error("The provider failed (`api_error`); the reply is stored"),
        504: _error("The reply did not end within WAIT_TIMEOUT_SECONDS; it goes on, stored"),
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, auth: AuthDep
) -> Response:
    """OpenAI's chat completions: the call is stored as a chat of kind `api`, queued and
    generated like any reply; with `stream: true` the answer streams its tokens."""
    call = to_api_call(body)
    submitted = await auth.run(api_call_service.submit, auth.settings, call, enqueue_generation)
    created = int(time.time())
    reply_header = {REPLY_ID_HEADER: str(submitted.reply_id)}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            completion_chunks(
                request, submitted.reply_id, body.model, created, include_usage, auth.settings
            ),
            media_type="text/event-stream",
            headers=STREAM_HEADERS | reply_header,
        )
    deleted = OpenAIRequestError(DELETED_ERROR, 404, code="reply_deleted")
    outcome = await wait_for_terminal(request, submitted.reply_id, auth.settings)
    if outcome is Waited.gone:
        return error_response(deleted, reply_header)
    if outcome is not Waited.final:
        # Pending (or the client already left): the generation goes on and is stored.
        error = OpenAIRequestError(
            f"The reply did not finish within {auth.settings.WAIT_TIMEOUT_SECONDS} seconds; "
            f"it goes on and is stored: GET /messages/{submitted.reply_id}",
            504,
            type_=SERVER_ERROR,
            code="timeout",
        )
        return error_response(error, reply_header)
    view = await run_in_session(stored_view, submitted.reply_id)
    if view is None:
        return error_response(deleted, reply_header)
    reply = read_view(view)
    if reply.status == ReplyStatus.failed:
        return error_response(failed_reply_error(reply), reply_header)
    return JSONResponse(completion(reply, body.model, created), headers=reply_header)


@router.get("/models", response_model=ModelList)
async def list_models(auth: AuthDep) -> ModelList:
    """Every model the caller may name: `provider/model` for each enabled provider's models,
    then the virtual models (pools, `auto:cheapest`)."""
    await auth.run(current_user)
    catalog = current_catalog(auth.settings)
    data = [ModelOut(id=model_id, owned_by=owner) for model_id, owner in model_ids(catalog)]
    data += [
        ModelOut(id=v.model, owned_by=VIRTUAL_OWNER)
        for v in virtual_models(catalog, auth.settings.DEFAULT_CONTEXT_TOKENS)
    ]
    return ModelList(data=data)
