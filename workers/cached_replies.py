"""Answering a reply from the response cache (shared/routing/cache.py), and filling it.

A Redis failure is a miss, never a failed reply: the cache only ever saves a provider call.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from shared.channel import ReplyPublisher
from shared.models import ReplyStatus
from shared.providers.base import Usage
from shared.redis_client import sync_redis
from shared.routing.cache import CachedReply, ResponseCache
from shared.settings import get_settings
from workers.outcomes import Outcome

log = logging.getLogger(__name__)

# Readers see a cached reply arrive in token events like a live one, this many characters at
# a time (the flusher merges them as it does a provider's).
PIECE_CHARS = 16


@lru_cache
def response_cache() -> ResponseCache:
    settings = get_settings()
    return ResponseCache(sync_redis(settings.REDIS_URL), settings.RESPONSE_CACHE_TTL_SECONDS)


def lookup(key: str) -> CachedReply | None:
    try:
        return response_cache().get(key)
    except Exception as exc:
        log.warning("response cache unavailable: %s", type(exc).__name__)
        return None


def remember(key: str, outcome: Outcome) -> None:
    usage = outcome.usage
    reply = CachedReply(
        outcome.text,
        outcome.finish_reason,
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
    )
    try:
        response_cache().put(key, reply)
    except Exception as exc:
        log.warning("response cache unavailable: %s", type(exc).__name__)


def replay(hit: CachedReply, publisher: ReplyPublisher) -> Outcome:
    started = time.monotonic()
    for i in range(0, len(hit.text), PIECE_CHARS):
        publisher.token(hit.text[i : i + PIECE_CHARS])
    return Outcome(
        ReplyStatus.completed,
        hit.text,
        Usage(0, 0),  # no provider call: nothing billed
        finish_reason=hit.finish_reason,
        ttft_ms=0 if hit.text else None,
        elapsed_ms=int((time.monotonic() - started) * 1000),
        cached=True,
    )
