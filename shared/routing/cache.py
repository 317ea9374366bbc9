"""The response cache: an exact repeat of a request is answered from Redis.

The key covers everything that shapes a reply (provider, model, the prompt as sent, the
sampling parameters), so only a true repeat hits. Opt-in per chat or message: a cached
reply is not a new sample, which a user asking again may have wanted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import redis

from shared.providers.base import Message


@dataclass(frozen=True, slots=True)
class CachedReply:
    text: str
    finish_reason: str | None
    # What the original call cost in tokens: the savings a hit makes.
    prompt_tokens: int
    completion_tokens: int


def cache_key(
    provider: str,
    model: str,
    messages: Sequence[Message],
    temperature: float | None,
    max_tokens: int | None,
    stop: list[str] | None = None,
) -> str:
    fields: dict[str, object] = {
        "provider": provider,
        "model": model,
        "messages": [[m.role, m.content] for m in messages],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if stop:  # only when given: keys cached before stop sequences existed stay valid
        fields["stop"] = stop
    canonical = json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return "sb:cache:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


class ResponseCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    def get(self, key: str) -> CachedReply | None:
        raw = self.client.get(key)
        return CachedReply(**json.loads(raw)) if raw is not None else None

    def put(self, key: str, reply: CachedReply) -> None:
        self.client.set(key, json.dumps(asdict(reply)), ex=self.ttl_seconds)
