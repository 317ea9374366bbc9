"""Reading a reply: its Server-Sent Events (live from the token channel, else replayed from
the database), and waiting for its end. Shared by the native routes and the compatible APIs."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from sse_starlette import ServerSentEvent

from api.deps import run_in_session
from api.schemas.messages import MessageRead
from shared.channel import TERMINAL_EVENTS, ChannelEvent, buffer_exists, read_events
from shared.chats.views import MessageView, message_views
from shared.db import DatabaseUnavailable, is_database_unavailable
from shared.errors import BadRequest
from shared.models import Message, ReplyStatus
from shared.pricing import format_cost
from shared.settings import Settings

log = logging.getLogger(__name__)

# Every answer that names a reply carries its id here (the compatible APIs too), so a client
# can resume its stream at /messages/{id}/stream or poll it.
REPLY_ID_HEADER = "x-switchboard-reply-id"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

IDLE_BLOCK_MS = 5000
FINAL_GRACE_MS = 500
# XREAD BLOCK 0 means "wait forever": a wait with less than a millisecond left must still end.
MIN_BLOCK_MS = 1
# While Redis is down, readers follow the stored row at this pace instead of the live channel.
REDIS_DOWN_POLL_SECONDS = 1.0
# Redis stream ids are two unsigned 64-bit numbers; anything larger makes XREAD fail.
MAX_STREAM_ID_PART = 2**64 - 1
STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
# Ids of events replayed from the database (see replay_from_database).
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


async def wait_for_terminal(request: Request, reply_id: uuid.UUID, settings: Settings) -> Waited:
    redis_client = request.app.state.redis
    deadline = time.monotonic() + settings.WAIT_TIMEOUT_SECONDS
    after = "0-0"
    while (remaining := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return Waited.disconnected
        block_ms = max(MIN_BLOCK_MS, int(min(remaining * 1000, IDLE_BLOCK_MS)))
        events = await read_or_none(redis_client, reply_id, after, block_ms)
        for event in events or ():
            after = event.id
            if event.event in TERMINAL_EVENTS:
                return Waited.final
        if not events:
            stored = await stored_status(reply_id)
            if stored == REPLY_GONE:
                return Waited.gone
            if is_final(stored):
                return Waited.final
    return Waited.pending


async def read_or_none(
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


def status_of(session: Session, reply_id: uuid.UUID) -> str:
    status_value = session.scalar(select(Message.status).where(Message.id == reply_id))
    return REPLY_GONE if status_value is None else status_value


async def stored_status(reply_id: uuid.UUID) -> str:
    """The reply's stored status, REPLY_GONE, or STATUS_UNKNOWN while the database is away
    (a reader then keeps following the live channel)."""
    try:
        return await run_in_session(status_of, reply_id)
    except Exception as exc:
        if not (isinstance(exc, DatabaseUnavailable) or is_database_unavailable(exc)):
            raise
        log.warning("database unavailable while following reply %s", reply_id)
        return STATUS_UNKNOWN


def is_final(stored: str) -> bool:
    return stored in ReplyStatus.__members__ and ReplyStatus(stored).is_final


def stored_view(session: Session, message_id: uuid.UUID) -> MessageView | None:
    message = session.get(Message, message_id)
    return None if message is None else message_views(session, [message])[0]


def read_view(view: MessageView) -> MessageRead:
    return MessageRead.model_validate(view, from_attributes=True)


def resume_point(last_event_id: str | None) -> str:
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


async def reply_events(
    request: Request, reply_id: uuid.UUID, after: str, final_at_start: bool, settings: Settings
) -> AsyncIterator[ServerSentEvent]:
    redis_client = request.app.state.redis
    closes_at = time.monotonic() + settings.SSE_MAX_CONNECTION_SECONDS
    sent_any = after != "0-0"
    if DATABASE_EVENT_ID.match(after) or (
        final_at_start and not await still_buffered(redis_client, reply_id)
    ):
        # Finished and no longer buffered (expired, or failed before it started): the
        # database is the record.
        async for event in replay_from_database(reply_id, sent_any):
            yield event
        return
    while time.monotonic() < closes_at:
        events = await read_or_none(redis_client, reply_id, after, IDLE_BLOCK_MS)
        if not events:
            if await request.is_disconnected():
                return
            stored = await stored_status(reply_id)
            if stored == REPLY_GONE:
                yield deleted_event()
                return
            if is_final(stored):
                # Give a worker that just committed a moment to publish its end event.
                events = await read_or_none(redis_client, reply_id, after, FINAL_GRACE_MS)
                if not events:
                    async for event in replay_from_database(reply_id, sent_any):
                        yield event
                    return
        for event in events or ():
            yield ServerSentEvent(data=event.data_json, event=event.event, id=event.id)
            after, sent_any = event.id, True
            if event.event in TERMINAL_EVENTS:
                return
    # Lifetime reached with no end event: the client reconnects with Last-Event-ID.


async def still_buffered(redis_client: aioredis.Redis, reply_id: uuid.UUID) -> bool:
    try:
        return await buffer_exists(redis_client, reply_id)
    except (redis.ConnectionError, redis.TimeoutError):
        return False  # unreachable: the stored row is what can be read


def deleted_event() -> ServerSentEvent:
    # The same end as the one chat deletion publishes (shared/channel.py end_deleted_replies),
    # for a reader that finds the row gone first.
    data = {"status": "failed", "error": DELETED_ERROR, "usage": None}
    return ServerSentEvent(data=json.dumps(data), event="error", id="db-2")


async def replay_from_database(
    reply_id: uuid.UUID, sent_any: bool
) -> AsyncIterator[ServerSentEvent]:
    try:
        view = await run_in_session(stored_view, reply_id)
    except Exception as exc:
        if not (isinstance(exc, DatabaseUnavailable) or is_database_unavailable(exc)):
            raise
        # End the body cleanly without an end event: the client reconnects with Last-Event-ID.
        log.warning("database unavailable while replaying reply %s", reply_id)
        return
    if view is None:
        yield deleted_event()
        return
    message = read_view(view)
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
