"""The token channel: how a reply's text travels from a worker to any number of readers.

For each assistant reply `{id}`:
- `sb:reply:{id}:events` is a Redis Stream, the replay buffer. Entries have two fields,
  `event` (`token`, `reset`, `done` or `error`) and `data` (a JSON object). It expires
  TOKEN_STREAM_TTL_SECONDS after the last write and is never trimmed, so a reader can start at
  `0-0` (from the beginning) or resume after any entry id (SSE `Last-Event-ID`).
- `sb:reply:{id}` is a pub/sub channel carrying the same entries as JSON
  `{"id": "<stream entry id>", "event": "...", "data": {...}}`, for any Redis client that
  prefers to subscribe (it sees only what is published after it subscribed).
- `sb:reply:{id}:stop` exists while a cancellation has been requested.

`token` data is `{"delta": "..."}`: text added since the previous token event (several provider
chunks may be merged into one event; never the whole text so far). `reset` means a new delivery
of the job restarted the reply: discard the text received so far. `done` and `error` end it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"done", "error"})


def stream_key(reply_id: object) -> str:
    return f"sb:reply:{reply_id}:events"


def pubsub_channel(reply_id: object) -> str:
    return f"sb:reply:{reply_id}"


def stop_key(reply_id: object) -> str:
    return f"sb:reply:{reply_id}:stop"


# One round trip per flush: append every event, publish each, refresh the TTL, and report
# whether a stop was requested. Atomic, so pub/sub and the stream never disagree on order.
_APPEND_SCRIPT = """
local ids = {}
for i = 3, #ARGV, 2 do
  local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[i], 'data', ARGV[i + 1])
  redis.call('PUBLISH', ARGV[1],
    '{"id":"' .. id .. '","event":"' .. ARGV[i] .. '","data":' .. ARGV[i + 1] .. '}')
  ids[#ids + 1] = id
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('EXISTS', KEYS[2])
"""


def _script_call(
    reply_id: object, events: list[tuple[str, dict[str, Any]]], ttl_seconds: int
) -> tuple[list[str], list[Any]]:
    args: list[Any] = [pubsub_channel(reply_id), ttl_seconds]
    for event, data in events:
        args += [event, json.dumps(data, separators=(",", ":"))]
    return [stream_key(reply_id), stop_key(reply_id)], args


@dataclass(slots=True)
class ChannelEvent:
    id: str
    event: str
    data_json: str  # kept as sent: the SSE route forwards it without re-encoding

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.data_json)


class TokenChannel:
    """The writer side, shared by every generation in a worker process (one client, one pool)."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._append = client.register_script(_APPEND_SCRIPT)

    def append(self, reply_id: object, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Append events in order; returns True when a stop has been requested."""
        keys, args = _script_call(reply_id, events, self.ttl_seconds)
        return bool(self._append(keys=keys, args=args))

    def restart(self, reply_id: object, reason: str) -> None:
        """A new delivery starts over: drop the old buffer and tell live readers to reset."""
        self.client.delete(stream_key(reply_id))
        self.append(reply_id, [("reset", {"reason": reason})])

    def stop_requested(self, reply_id: object) -> bool:
        return bool(self.client.exists(stop_key(reply_id)))


class ReplyPublisher:
    """Publishes one reply's deltas, batched: the first delta goes out at once, later ones at
    most every `flush_interval` seconds, so per-token Redis round trips do not dominate.

    Redis failures never stop a generation: the reply is still stored in the database, only
    live streaming degrades (readers then fall back to the stored reply).
    """

    def __init__(self, channel: TokenChannel, reply_id: object, flush_interval: float) -> None:
        self.channel = channel
        self.reply_id = reply_id
        self.flush_interval = flush_interval
        self.stop_requested = False
        self.broken = False
        self._pending: list[str] = []
        self._last_flush = 0.0
        self._sent_any = False

    def token(self, text: str) -> None:
        self._pending.append(text)
        now = time.monotonic()
        if not self._sent_any or now - self._last_flush >= self.flush_interval:
            self._flush([], now)

    def finish(self, event: str, data: dict[str, Any]) -> None:
        """Flush what is pending and the terminal event in one call."""
        self._flush([(event, data)], time.monotonic())

    def _flush(self, extra: list[tuple[str, dict[str, Any]]], now: float) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        if self._pending:
            events.append(("token", {"delta": "".join(self._pending)}))
            self._pending.clear()
        events.extend(extra)
        self._last_flush = now
        if not events or self.broken:
            return
        try:
            self.stop_requested = self.channel.append(self.reply_id, events) or self.stop_requested
            self._sent_any = True
        except redis.RedisError as exc:
            self.broken = True
            log.warning("token channel unavailable for reply %s: %s", self.reply_id, exc)


async def read_events(
    client: aioredis.Redis, reply_id: object, after_id: str, block_ms: int, count: int = 1000
) -> list[ChannelEvent]:
    """Entries after `after_id` ('0-0' for all), waiting up to `block_ms` for the first one."""
    result = await client.xread({stream_key(reply_id): after_id}, count=count, block=block_ms)
    events: list[ChannelEvent] = []
    for _key, entries in result or []:
        for entry_id, fields in entries:
            events.append(ChannelEvent(entry_id, fields["event"], fields["data"]))
    return events


async def text_so_far(client: aioredis.Redis, reply_id: object) -> str:
    """The reply's text as buffered so far (after the last `reset`)."""
    parts: list[str] = []
    for _entry_id, fields in await client.xrange(stream_key(reply_id)):
        if fields["event"] == "reset":
            parts.clear()
        elif fields["event"] == "token":
            parts.append(json.loads(fields["data"])["delta"])
    return "".join(parts)


async def buffer_exists(client: aioredis.Redis, reply_id: object) -> bool:
    return bool(await client.exists(stream_key(reply_id)))


async def append_events(
    client: aioredis.Redis,
    reply_id: object,
    events: list[tuple[str, dict[str, Any]]],
    ttl_seconds: int,
) -> None:
    """The asyncio twin of TokenChannel.append, for the API (e.g. cancelling a queued reply)."""
    keys, args = _script_call(reply_id, events, ttl_seconds)
    await client.eval(_APPEND_SCRIPT, len(keys), *keys, *args)


async def request_stop(client: aioredis.Redis, reply_id: object, ttl_seconds: int) -> None:
    await client.set(stop_key(reply_id), "1", ex=ttl_seconds)
