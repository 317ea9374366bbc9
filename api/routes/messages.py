"""Submitting messages and reading replies: poll, Server-Sent Events, cancel."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import AuthDep, run_in_session
from api.schemas.messages import ChatRequest, MessageRead, SubmitAccepted
from shared.channel import (
    TERMINAL_EVENTS,
    append_events,
    buffer_exists,
    read_events,
    request_stop,
    text_so_far,
)
from shared.chats.submission import Submitted, submission_service
from shared.chats.views import MessageView, message_views
from shared.models import Message, ReplyStatus
from shared.settings import Settings
from workers.celery_app import enqueue_generation

router = APIRouter(tags=["messages"])

IDLE_BLOCK_MS = 5000
FINAL_GRACE_MS = 500
STREAM_ID = re.compile(r"^\d+-\d+$")


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
    responses={
        200: {"model": MessageRead, "description": "With ?wait=true: the finished reply"},
        503: {"description": "The queue is down; the message is stored, the reply failed"},
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
    )
    accepted = _accepted(submitted)
    if not wait:
        return accepted
    finished = await _wait_for_terminal(request, submitted.reply_id, auth.settings)
    if not finished:
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    view = await run_in_session(_message_view, submitted.reply_id)
    return JSONResponse(_read(view).model_dump(mode="json"), status_code=200)


async def _wait_for_terminal(request: Request, reply_id: uuid.UUID, settings: Settings) -> bool:
    deadline = time.monotonic() + settings.WAIT_TIMEOUT_SECONDS
    after = "0-0"
    while (remaining := deadline - time.monotonic()) > 0:
        events = await read_events(
            request.app.state.redis,
            reply_id,
            after,
            block_ms=int(min(remaining, IDLE_BLOCK_MS / 1000) * 1000),
        )
        for event in events:
            after = event.id
            if event.event in TERMINAL_EVENTS:
                return True
        if not events and await run_in_session(_is_final, reply_id):
            return True
    return False


def _is_final(session: Session, reply_id: uuid.UUID) -> bool:
    status_value = session.get_one(Message, reply_id).status
    return status_value is not None and ReplyStatus(status_value).is_final


def _message_view(session: Session, message_id: uuid.UUID) -> MessageView:
    return message_views(session, [session.get_one(Message, message_id)])[0]


def _read(view: MessageView) -> MessageRead:
    return MessageRead.model_validate(view, from_attributes=True)


@router.get("/messages/{message_id}", response_model=MessageRead)
async def read_message(message_id: uuid.UUID, request: Request, auth: AuthDep) -> MessageRead:
    """A message; for a reply still generating, `content` is the text streamed so far."""
    result = _read(await auth.run(submission_service.reply_view, message_id))
    if result.status == ReplyStatus.running:
        result.content = await text_so_far(request.app.state.redis, result.id)
    return result


@router.post(
    "/messages/{message_id}/cancel",
    response_model=MessageRead,
    responses={409: {"description": "The reply has already finished"}},
)
async def cancel_message(message_id: uuid.UUID, request: Request, auth: AuthDep) -> MessageRead:
    result = _read(await auth.run(submission_service.cancel, message_id))
    redis = request.app.state.redis
    ttl = auth.settings.TOKEN_STREAM_TTL_SECONDS
    if result.status == ReplyStatus.running:
        # The worker sees the flag at its next flush, stops, and stores the partial reply.
        await request_stop(redis, result.id, ttl)
    else:  # cancelled before a worker took it: end any open stream here
        await append_events(redis, result.id, [terminal_event(result)], ttl)
    return result


@router.get(
    "/messages/{message_id}/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`token` events, then one `done` or `error` event",
        }
    },
)
async def stream_message(
    message_id: uuid.UUID,
    request: Request,
    auth: AuthDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Server-Sent Events for a reply, from the start or after `Last-Event-ID`."""
    reply = await auth.run(submission_service.get_reply, message_id)
    final = reply.status is not None and ReplyStatus(reply.status).is_final
    return EventSourceResponse(
        _reply_events(request, reply.id, last_event_id or "0-0", final, auth.settings),
        ping=auth.settings.SSE_HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _reply_events(
    request: Request, reply_id: uuid.UUID, after: str, final_at_start: bool, settings: Settings
) -> AsyncIterator[ServerSentEvent]:
    redis = request.app.state.redis
    closes_at = time.monotonic() + settings.SSE_MAX_CONNECTION_SECONDS
    resumed_from_database = not STREAM_ID.match(after)
    sent_any = after != "0-0"
    if resumed_from_database or (final_at_start and not await buffer_exists(redis, reply_id)):
        # Finished and no longer buffered (expired, or failed before it started): the
        # database is the record.
        async for event in _replay_from_database(reply_id, sent_any):
            yield event
        return
    while time.monotonic() < closes_at:
        events = await read_events(redis, reply_id, after, block_ms=IDLE_BLOCK_MS)
        if not events:
            if await request.is_disconnected():
                return
            if await run_in_session(_is_final, reply_id):
                # Give a worker that just committed a moment to publish its end event.
                events = await read_events(redis, reply_id, after, block_ms=FINAL_GRACE_MS)
                if not events:
                    async for event in _replay_from_database(reply_id, sent_any):
                        yield event
                    return
        for event in events:
            yield ServerSentEvent(data=event.data_json, event=event.event, id=event.id)
            after, sent_any = event.id, True
            if event.event in TERMINAL_EVENTS:
                return
    # Lifetime reached with no end event: the client reconnects with Last-Event-ID.


async def _replay_from_database(
    reply_id: uuid.UUID, sent_any: bool
) -> AsyncIterator[ServerSentEvent]:
    message = _read(await run_in_session(_message_view, reply_id))
    if sent_any:
        yield ServerSentEvent(
            data=json.dumps({"reason": "replayed from the database"}), event="reset", id="db-0"
        )
    if message.content:
        yield ServerSentEvent(data=json.dumps({"delta": message.content}), event="token", id="db-1")
    event, data = terminal_event(message)
    yield ServerSentEvent(data=json.dumps(data), event=event, id="db-2")


def terminal_event(message: MessageRead) -> tuple[str, dict[str, object]]:
    usage = message.usage.model_dump() if message.usage else None
    if message.status == ReplyStatus.failed:
        return "error", {"status": "failed", "error": message.error, "usage": usage}
    return "done", {
        "status": message.status,
        "usage": usage,
        "cost": str(message.cost) if message.cost is not None else None,
    }
