"""Submitting messages and reading replies: poll, Server-Sent Events, cancel."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import AuthDep, run_in_session
from api.schemas.common import ErrorOut
from api.schemas.messages import ChatRequest, MessageRead, RatingIn, SubmitAccepted
from api.schemas.responses import AUTHENTICATED, BODY_ERRORS, conflict, not_found
from shared.channel import (
    TERMINAL_EVENTS,
    ChannelEvent,
    append_events,
    buffer_exists,
    read_events,
    request_stop,
    text_so_far,
)
from shared.chats.ratings import rating_service
from shared.chats.submission import MessageNotFound, Submitted, submission_service
from shared.chats.views import MessageView, message_views
from shared.db import DatabaseUnavailable, is_database_unavailable
from shared.errors import BadRequest
from shared.models import Message, ReplyStatus
from shared.pricing import format_cost
from shared.settings import Settings
from workers.celery_app import enqueue_generation

log = logging.getLogger(__name__)

router = APIRouter(tags=["messages"], responses=AUTHENTICATED)

MESSAGE_NOT_FOUND = not_found("message")

IDLE_BLOCK_MS = 5000
FINAL_GRACE_MS = 500
# XREAD BLOCK 0 means "wait forever": a wait with less than a millisecond left must still end.
MIN_BLOCK_MS = 1
# While Redis is down, readers follow the stored row at this pace instead of the live channel.
REDIS_DOWN_POLL_SECONDS = 1.0
# Redis stream ids are two unsigned 64-bit numbers; anything larger makes XREAD fail.
MAX_STREAM_ID_PART = 2**64 - 1
STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
# Ids of events replayed from the database (see _replay_from_database).
DATABASE_EVENT_ID = re.compile(r"^db-[0-2]$")
# What Last-Event-ID may be: empty (from the start), a Redis stream id, or a database replay id.
LAST_EVENT_ID_PATTERN = r"^(\d{1,20}-\d{1,20}|db-[0-2])?$"

# Not reply statuses: what a reader learns about a reply's row besides its status.
REPLY_GONE = "gone"  # deleted with its chat
STATUS_UNKNOWN = "unknown"  # the database did not answer
DELETED_ERROR = "The chat was deleted"


class Waited(enum.Enum):
    final = "final"
    gone = "gone"  # the reply was deleted with its chat
    pending = "pending"  # WAIT_TIMEOUT_SECONDS passed
    disconnected = "disconnected"  # the client left: stop waiting for nobody


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
        200: {"model": MessageRead, "description": "With ?wait=true: the finished reply"},
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
    )
    accepted = _accepted(submitted)
    if not wait:
        return accepted
    outcome = await _wait_for_terminal(request, submitted.reply_id, auth.settings)
    if outcome is Waited.gone:
        raise MessageNotFound(DELETED_ERROR)
    if outcome is not Waited.final:
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    view = await run_in_session(_message_view, submitted.reply_id)
    if view is None:
        raise MessageNotFound(DELETED_ERROR)
    return JSONResponse(_read(view).model_dump(mode="json"), status_code=200)


async def _wait_for_terminal(request: Request, reply_id: uuid.UUID, settings: Settings) -> Waited:
    redis_client = request.app.state.redis
    deadline = time.monotonic() + settings.WAIT_TIMEOUT_SECONDS
    after = "0-0"
    while (remaining := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return Waited.disconnected
        block_ms = max(MIN_BLOCK_MS, int(min(remaining * 1000, IDLE_BLOCK_MS)))
        events = await _read_or_none(redis_client, reply_id, after, block_ms)
        for event in events or ():
            after = event.id
            if event.event in TERMINAL_EVENTS:
                return Waited.final
        if not events:
            stored = await _stored_status(reply_id)
            if stored == REPLY_GONE:
                return Waited.gone
            if _is_final(stored):
                return Waited.final
    return Waited.pending


async def _read_or_none(
    redis_client: aioredis.Redis, reply_id: uuid.UUID, after: str, block_ms: int
) -> list[ChannelEvent] | None:
    """The channel's next events, or None while Redis is unreachable (after a pause, so a
    caller that falls back to the database does not spin)."""
    try:
        return await read_events(redis_client, reply_id, after, block_ms=block_ms)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("token channel unavailable for reply %s: %s", reply_id, type(exc).__name__)
        await asyncio.sleep(min(REDIS_DOWN_POLL_SECONDS, block_ms / 1000))
        return None


def _status_of(session: Session, reply_id: uuid.UUID) -> str:
    status_value = session.scalar(select(Message.status).where(Message.id == reply_id))
    return REPLY_GONE if status_value is None else status_value


async def _stored_status(reply_id: uuid.UUID) -> str:
    """The reply's stored status, REPLY_GONE, or STATUS_UNKNOWN while the database is away
    (a reader then keeps following the live channel)."""
    try:
        return await run_in_session(_status_of, reply_id)
    except Exception as exc:
        if not (isinstance(exc, DatabaseUnavailable) or is_database_unavailable(exc)):
            raise
        log.warning("database unavailable while following reply %s", reply_id)
        return STATUS_UNKNOWN


def _is_final(stored: str) -> bool:
    return stored in ReplyStatus.__members__ and ReplyStatus(stored).is_final


def _message_view(session: Session, message_id: uuid.UUID) -> MessageView | None:
    message = session.get(Message, message_id)
    return None if message is None else message_views(session, [message])[0]


def _read(view: MessageView) -> MessageRead:
    return MessageRead.model_validate(view, from_attributes=True)


@router.get("/messages/{message_id}", response_model=MessageRead, responses=MESSAGE_NOT_FOUND)
async def read_message(message_id: uuid.UUID, request: Request, auth: AuthDep) -> MessageRead:
    """A message; for a reply still generating, `content` is the text streamed so far (or,
    while Redis is unreachable, the text stored so far)."""
    result = _read(await auth.run(submission_service.reply_view, message_id))
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
    result = _read(await auth.run(submission_service.cancel, message_id))
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
    return _read(await auth.run(rating_service.rate, message_id, body.rating))


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
            # Documented, not enforced by FastAPI: _resume_point answers a bad id with 400
            # (and also bounds each number, which a pattern cannot).
            json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN},
        ),
    ] = "",
) -> EventSourceResponse:
    """Server-Sent Events for a reply, from the start or after `Last-Event-ID`."""
    reply = await auth.run(submission_service.get_streamable, message_id)
    after = _resume_point(last_event_id)
    final = reply.status is not None and ReplyStatus(reply.status).is_final
    return EventSourceResponse(
        _reply_events(request, reply.id, after, final, auth.settings),
        ping=auth.settings.SSE_HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(last_event_id: str | None) -> str:
    """Where to resume: '0-0' (the start), a Redis stream id, or a `db-N` replay id.

    Checked before the stream starts: an id Redis refuses would otherwise fail inside the
    body, which can then only be cut off.
    """
    if not last_event_id:
        return "0-0"
    if DATABASE_EVENT_ID.match(last_event_id):
        return last_event_id
    parts = STREAM_ID.match(last_event_id)
    if parts and all(int(part) <= MAX_STREAM_ID_PART for part in parts.groups()):
        return last_event_id
    raise BadRequest("Last-Event-ID is not an event id of this stream")


async def _reply_events(
    request: Request, reply_id: uuid.UUID, after: str, final_at_start: bool, settings: Settings
) -> AsyncIterator[ServerSentEvent]:
    redis_client = request.app.state.redis
    closes_at = time.monotonic() + settings.SSE_MAX_CONNECTION_SECONDS
    sent_any = after != "0-0"
    if DATABASE_EVENT_ID.match(after) or (
        final_at_start and not await _still_buffered(redis_client, reply_id)
    ):
        # Finished and no longer buffered (expired, or failed before it started): the
        # database is the record.
        async for event in _replay_from_database(reply_id, sent_any):
            yield event
        return
    while time.monotonic() < closes_at:
        events = await _read_or_none(redis_client, reply_id, after, IDLE_BLOCK_MS)
        if not events:
            if await request.is_disconnected():
                return
            stored = await _stored_status(reply_id)
            if stored == REPLY_GONE:
                yield _deleted_event()
                return
            if _is_final(stored):
                # Give a worker that just committed a moment to publish its end event.
                events = await _read_or_none(redis_client, reply_id, after, FINAL_GRACE_MS)
                if not events:
                    async for event in _replay_from_database(reply_id, sent_any):
                        yield event
                    return
        for event in events or ():
            yield ServerSentEvent(data=event.data_json, event=event.event, id=event.id)
            after, sent_any = event.id, True
            if event.event in TERMINAL_EVENTS:
                return
    # Lifetime reached with no end event: the client reconnects with Last-Event-ID.


async def _still_buffered(redis_client: aioredis.Redis, reply_id: uuid.UUID) -> bool:
    try:
        return await buffer_exists(redis_client, reply_id)
    except (redis.ConnectionError, redis.TimeoutError):
        return False  # unreachable: the stored row is what can be read


def _deleted_event() -> ServerSentEvent:
    # The same end as the one chat deletion publishes (shared/channel.py end_deleted_replies),
    # for a reader that finds the row gone first.
    data = {"status": "failed", "error": DELETED_ERROR, "usage": None}
    return ServerSentEvent(data=json.dumps(data), event="error", id="db-2")


async def _replay_from_database(
    reply_id: uuid.UUID, sent_any: bool
) -> AsyncIterator[ServerSentEvent]:
    try:
        view = await run_in_session(_message_view, reply_id)
    except Exception as exc:
        if not (isinstance(exc, DatabaseUnavailable) or is_database_unavailable(exc)):
            raise
        # End the body cleanly without an end event: the client reconnects with Last-Event-ID.
        log.warning("database unavailable while replaying reply %s", reply_id)
        return
    if view is None:
        yield _deleted_event()
        return
    message = _read(view)
    if sent_any:
        yield ServerSentEvent(
            data=json.dumps({"reason": "replayed from the database"}), event="reset", id="db-0"
        )
    if message.content:
        yield ServerSentEvent(data=json.dumps({"delta": message.content}), event="token", id="db-1")
    event, data = terminal_event(message)
    yield ServerSentEvent(data=json.dumps(data), event=event, id="db-2")


def terminal_event(message: MessageRead) -> tuple[str, dict[str, object]]:
    """The end event as the worker publishes it (workers/generation.py), from a stored reply."""
    usage = message.usage.model_dump() if message.usage else None
    if message.status == ReplyStatus.failed:
        return "error", {"status": "failed", "error": message.error, "usage": usage}
    return "done", {
        "status": message.status,
        "usage": usage,
        "cost": format_cost(message.cost) if message.cost is not None else None,
        "finish_reason": message.finish_reason,
    }
