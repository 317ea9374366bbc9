"""The token channel: how a reply's text travels from a worker to any number of readers.

For each assistant reply `{id}`:
- `sb:reply:{id}:events` is a Redis Stream, the replay buffer. Entries have two fields,
  `event` (`token`, `reset`, `restart`, `done` or `error`) and `data` (a JSON object). It expires
  TOKEN_STREAM_TTL_SECONDS after the last write and is never trimmed, so a reader can start at
  `0-0` (from the beginning) or resume after any entry id (SSE `Last-Event-ID`).
- `sb:reply:{id}` is a pub/sub channel carrying the same entries as JSON
  `{"id": "<stream entry id>", "event": "...", "data": {...}}`, for any Redis client that
  prefers to subscribe (it sees only what is published after it subscribed).
- `sb:reply:{id}:stop` exists while a cancellation has been requested.

`token` data is `{"delta": "..."}`: text added since the previous token event (several provider
chunks may be merged into one event; never the whole text so far). `reset` means a new delivery
of the job restarted the reply: discard the text received so far. `restart` (`{"provider",
"model", "reason"}`) means the target failed after sending tokens and the reply starts over on
a fallback: discard the text too. `done` and `error` end it.
"""

from __future__ import annotations

import json
import logging
import threading
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


# One round trip per flush, for any number of replies: append each reply's events, publish
# each, refresh the TTL, and report whether a stop was requested. Atomic, so pub/sub and the
# stream never disagree on order.
# KEYS: stream, stop flag (per reply). ARGV: ttl, then per reply: n, channel, n x (event, data).
_APPEND_SCRIPT = """
local ttl = ARGV[1]
local a = 2
local stops = {}
for r = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  local channel = ARGV[a + 1]
  a = a + 2
  for _ = 1, n do
    local event, data = ARGV[a], ARGV[a + 1]
    a = a + 2
    local id = redis.call('XADD', KEYS[r], '*', 'event', event, 'data', data)
    redis.call('PUBLISH', channel,
      '{"id":"' .. id .. '","event":"' .. event .. '","data":' .. data .. '}')
  end
  redis.call('EXPIRE', KEYS[r], ttl)
  stops[#stops + 1] = redis.call('EXISTS', KEYS[r + 1])
end
return stops
"""

Events = list[tuple[str, dict[str, Any]]]


def _encode(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _script_call(
    batches: list[tuple[object, list[tuple[str, str]]]], ttl_seconds: int
) -> tuple[list[str], list[Any]]:
    """Arguments of one script call for (reply_id, [(event, data_json), ...]) batches."""
    keys: list[str] = []
    args: list[Any] = [ttl_seconds]
    for reply_id, events in batches:
        keys += [stream_key(reply_id), stop_key(reply_id)]
        args += [len(events), pubsub_channel(reply_id)]
        for event, data_json in events:
            args += [event, data_json]
    return keys, args


@dataclass(slots=True)
class ChannelEvent:
    id: str
    event: str
    data_json: str  # kept as sent: the SSE route forwards it without re-encoding

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.data_json)


class TokenChannel:
    """The writer side, one per worker process: one Redis client, and one flusher thread
    (a greenlet under gevent) that sends every reply's pending deltas in a single script call
    every `flush_interval` seconds. Per-token Redis round trips would otherwise dominate the
    worker's CPU (one round trip per token at 20 ms per token, for hundreds of replies).
    """

    def __init__(self, client: redis.Redis, ttl_seconds: int, flush_interval: float) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.flush_interval = flush_interval
        self._append = client.register_script(_APPEND_SCRIPT)
        self._scheduled: dict[int, ReplyPublisher] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None

    def publisher(self, reply_id: object) -> ReplyPublisher:
        return ReplyPublisher(self, reply_id)

    def append(self, reply_id: object, events: Events) -> bool:
        """Append events now, in order; returns True when a stop has been requested."""
        encoded = [(event, _encode(data)) for event, data in events]
        return self._send([(reply_id, encoded)])[0]

    def restart(self, reply_id: object, reason: str) -> None:
        """A new delivery starts over: drop the old buffer and tell live readers to reset."""
        self.client.delete(stream_key(reply_id))
        self.append(reply_id, [("reset", {"reason": reason})])

    def _send(self, batches: list[tuple[object, list[tuple[str, str]]]]) -> list[bool]:
        keys, args = _script_call(batches, self.ttl_seconds)
        return [bool(flag) for flag in self._append(keys=keys, args=args)]

    def schedule(self, publisher: ReplyPublisher) -> None:
        with self._lock:
            self._scheduled[id(publisher)] = publisher
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="token-flusher", daemon=True
                )
                self._flusher.start()
        self._wake.set()

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.flush_interval)  # the batching window
            self._wake.clear()
            with self._lock:
                publishers = list(self._scheduled.values())
                self._scheduled.clear()
            if publishers:
                self.flush(publishers, blocking=False)

    def flush(self, publishers: list[ReplyPublisher], *, blocking: bool = True) -> None:
        """Send what these publishers hold, in one call. A publisher being flushed elsewhere
        is skipped when not `blocking` (its sender takes what is pending)."""
        taken: list[ReplyPublisher] = []
        batches: list[tuple[object, list[tuple[str, str]]]] = []
        for publisher in publishers:
            if not publisher.send_lock.acquire(blocking=blocking):
                continue
            events = publisher.take_pending()
            if events and not publisher.broken:
                taken.append(publisher)
                batches.append((publisher.reply_id, events))
            else:
                publisher.send_lock.release()
        if not batches:
            return
        try:
            for publisher, stop in zip(taken, self._send(batches), strict=True):
                publisher.stop_requested = publisher.stop_requested or stop
        except redis.RedisError as exc:
            for publisher in taken:
                publisher.broken = True
            log.warning("token channel unavailable for %d replies: %s", len(taken), exc)
        finally:
            for publisher in taken:
                publisher.send_lock.release()


class ReplyPublisher:
    """One reply's deltas. The first goes out at once (time to first token); later ones wait
    for the channel's flusher, at most `flush_interval`; the end event goes out at once, after
    everything before it.

    Redis failures never stop a generation: the reply is still stored in the database, only
    live streaming degrades (readers then fall back to the stored reply).
    """

    def __init__(self, channel: TokenChannel, reply_id: object) -> None:
        self.channel = channel
        self.reply_id = reply_id
        self.stop_requested = False
        self.broken = False
        self.send_lock = threading.Lock()  # held while this reply's events are on the wire
        self._buffer_lock = threading.Lock()  # the flusher is a real thread outside gevent
        self._text: list[str] = []
        self._end: tuple[str, str] | None = None
        self._sent_any = False

    def token(self, text: str) -> None:
        with self._buffer_lock:
            self._text.append(text)
        if self._sent_any:
            self.channel.schedule(self)
        else:
            self._sent_any = True
            self.channel.flush([self])

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Flush what is pending and then `event`, in order, now."""
        self._end = (event, _encode(data))
        self.channel.flush([self])

    def finish(self, event: str, data: dict[str, Any]) -> None:
        """The end event (`done` or `error`), after everything before it."""
        self.emit(event, data)

    def take_pending(self) -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        with self._buffer_lock:
            text, self._text = self._text, []
        if text:
            events.append(("token", _encode({"delta": "".join(text)})))
        if self._end is not None:
            events.append(self._end)
            self._end = None
        return events


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
    """The reply's text as buffered so far (after the last `reset` or `restart`)."""
    parts: list[str] = []
    for _entry_id, fields in await client.xrange(stream_key(reply_id)):
        if fields["event"] in ("reset", "restart"):
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
    encoded = [(event, _encode(data)) for event, data in events]
    keys, args = _script_call([(reply_id, encoded)], ttl_seconds)
    await client.eval(_APPEND_SCRIPT, len(keys), *keys, *args)


async def request_stop(client: aioredis.Redis, reply_id: object, ttl_seconds: int) -> None:
    await client.set(stop_key(reply_id), "1", ex=ttl_seconds)


async def end_deleted_replies(
    client: aioredis.Redis, replies: list[tuple[object, str]], ttl_seconds: int
) -> None:
    """The chat of these unfinished replies was deleted: stop the running ones (their worker
    records the usage consumed so far) and end every reader's stream."""
    error = {"status": "failed", "error": "The chat was deleted"}
    for reply_id, status in replies:
        if status == "running":
            await request_stop(client, reply_id, ttl_seconds)
        await append_events(client, reply_id, [("error", error)], ttl_seconds)
