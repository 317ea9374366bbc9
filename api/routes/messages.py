"""Submitting messages and reading replies: poll, Server-Sent Events, cancel."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

import redis
from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.deps import AuthDep, run_in_session
from api.reply_stream import (
    DELETED_ERROR,
    LAST_EVENT_ID_PATTERN,
    REPLY_ID_HEADER,
    STREAM_HEADERS,
    Waited,
    read_view,
    reply_events,
    resume_point,
    stored_view,
    terminal_event,
    wait_for_terminal,
)
from api.schemas.common import ErrorOut
from api.schemas.messages import ChatRequest, MessageRead, RatingIn, SubmitAccepted
from api.schemas.responses import AUTHENTICATED, BODY_ERRORS, conflict, not_found
from shared.channel import (
    append_events,
    request_stop,
    text_so_far,
)
from shared.chats.ratings import rating_service
from shared.chats.submission import MessageNotFound, Submitted, submission_service
from shared.models import ReplyStatus
from workers.celery_app import enqueue_generation

log = logging.getLogger(__name__)

router = APIRouter(tags=["messages"], responses=AUTHENTICATED)

MESSAGE_NOT_FOUND = not_found("message")


def _accepted(submitted: Submitted) -> SubmitAccepted:
    return SubmitAccepted(
        message_id=submitted.message_id,
        reply_id=submitted.reply_id,
        status=submitted.status,
        provider=submitted.provider,
        model=submitted.model,
        poll_url=f"/messages/{submitted.reply_id}",
        stream_url=f"/messages/{submitted.reply_id}/stream",
    )


@router.post(
    "/chats/{chat_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitAccepted,
    responses=BODY_ERRORS
    | not_found("chat (or it was deleted while ?wait=true waited)")
    | conflict("This Idempotency-Key was already used in this chat with a different request")
    | {
        200: {
            "model": MessageRead,
            "description": "With ?wait=true: the finished reply. With `Accept: "
            "text/event-stream`: the reply's Server-Sent Events, as /messages/{id}/stream "
            "sends them (resume there with Last-Event-ID; the reply id is in the "
            "`x-switchboard-reply-id` header)",
            "content": {"text/event-stream": {}},
        },
        400: {
            "model": ErrorOut,
            "description": "The body cannot be decoded, or the message exceeds MAX_MESSAGE_CHARS",
        },
        503: {
            "model": ErrorOut,
            "description": "The queue is down (the message is stored, the reply failed: retry "
            "with the same Idempotency-Key), or the database is unavailable; see Retry-After",
        },
    },
)
async def submit_message(
    chat_id: uuid.UUID,
    body: ChatRequest,
    request: Request,
    auth: AuthDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    wait: Annotated[bool, Query(description="Block until the reply is finished")] = False,
) -> object:
    submitted = await auth.run(
        submission_service.submit,
        auth.settings,
        chat_id,
        text=body.message,
        provider=body.provider,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        idempotency_key=idempotency_key,
        enqueue=enqueue_generation,
        routing=body.routing,
        stop=body.stop,
    )
    accepted = _accepted(submitted)
    reply_header = {REPLY_ID_HEADER: str(submitted.reply_id)}
    if _wants_events(request):
        # One request: the reply's stream in the answer, from its first event (a client that
        # drops it resumes at /messages/{id}/stream; the generation goes on regardless).
        return EventSourceResponse(
            reply_events(request, submitted.reply_id, "0-0", False, auth.settings),
            ping=auth.settings.SSE_HEARTBEAT_SECONDS,
            headers=STREAM_HEADERS | reply_header,
        )
    if not wait:
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=reply_header)
    outcome = await wait_for_terminal(request, submitted.reply_id, auth.settings)
    if outcome is Waited.gone:
        raise MessageNotFound(DELETED_ERROR)
    if outcome is not Waited.final:
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    view = await run_in_session(stored_view, submitted.reply_id)
    if view is None:
        raise MessageNotFound(DELETED_ERROR)
    return JSONResponse(read_view(view).model_dump(mode="json"), status_code=200)


def _wants_events(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


@router.get("/messages/{message_id}", response_model=MessageRead, responses=MESSAGE_NOT_FOUND)
async def read_message(message_id: uuid.UUID, request: Request, auth: AuthDep) -> MessageRead:
    """A message; for a reply still generating, `content` is the text streamed so far (or,
    while Redis is unreachable, the text stored so far)."""
    result = read_view(await auth.run(submission_service.reply_view, message_id))
    if result.status == ReplyStatus.running:
        try:
            result.content = await text_so_far(request.app.state.redis, result.id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning(
                "token channel unavailable, answering the stored row: %s", type(exc).__name__
            )
    return result


@router.post(
    "/messages/{message_id}/cancel",
    response_model=MessageRead,
    responses=MESSAGE_NOT_FOUND
    | {
        409: {
            "model": ErrorOut,
            "description": "The reply has already finished, or this is a user message",
        },
        503: {
            "model": ErrorOut,
            "description": "Redis is unreachable (a running reply cannot be told to stop), or "
            "the database is unavailable; see Retry-After",
        },
    },
)
async def cancel_message(message_id: uuid.UUID, request: Request, auth: AuthDep) -> MessageRead:
    result = read_view(await auth.run(submission_service.cancel, message_id))
    redis_client = request.app.state.redis
    ttl = auth.settings.TOKEN_STREAM_TTL_SECONDS
    if result.status == ReplyStatus.running:
        # The worker sees the flag at its next flush, stops, and stores the partial reply.
        # Redis down: the 503 tells the client the stop was not delivered.
        await request_stop(redis_client, result.id, ttl)
        return result
    # Cancelled before a worker took it (committed): end any open stream now. Without Redis,
    # open streams still end, from the stored row, within one idle read.
    try:
        await append_events(redis_client, result.id, [terminal_event(result)], ttl)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("could not publish the cancel of %s: %s", result.id, type(exc).__name__)
    return result


@router.put(
    "/messages/{message_id}/rating",
    response_model=MessageRead,
    responses=BODY_ERRORS
    | MESSAGE_NOT_FOUND
    | conflict("This is a user message: only assistant replies are rated"),
)
async def rate_message(message_id: uuid.UUID, body: RatingIn, auth: AuthDep) -> MessageRead:
    """The caller's thumbs up (1) or down (-1) on a reply; null clears it."""
    return read_view(await auth.run(rating_service.rate, message_id, body.rating))


@router.get(
    "/messages/{message_id}/stream",
    response_class=EventSourceResponse,
    responses=MESSAGE_NOT_FOUND
    | {
        200: {
            "content": {"text/event-stream": {}},
            "description": "`token` events, then one `done` or `error` event",
        },
        400: {
            "model": ErrorOut,
            "description": "`Last-Event-ID` is not an event id of a reply stream",
        },
        409: {"model": ErrorOut, "description": "A user message: only replies stream"},
    },
)
async def stream_message(
    message_id: uuid.UUID,
    request: Request,
    auth: AuthDep,
    # A plain string, "" when absent: `str | None` would be documented as `anyOf [string, null]`,
    # and a header cannot be null (schemathesis sends the text "null" for it).
    last_event_id: Annotated[
        str,
        Header(
            max_length=100,
            # Documented, not enforced by FastAPI: resume_point answers a bad id with 400
            # (and also bounds each number, which a pattern cannot).
            json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN},
        ),
    ] = "",
) -> EventSourceResponse:
    """Server-Sent Events for a reply, from the start or after `Last-Event-ID`."""
    reply = await auth.run(submission_service.get_streamable, message_id)
    after = resume_point(last_event_id)
    final = reply.status is not None and ReplyStatus(reply.status).is_final
    return EventSourceResponse(
        reply_events(request, reply.id, after, final, auth.settings),
        ping=auth.settings.SSE_HEARTBEAT_SECONDS,
        headers=STREAM_HEADERS,
    )
