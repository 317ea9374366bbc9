"""The response cache: only an exact repeat shares a key; entries live in Redis for the TTL."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from shared.providers.base import Message
from shared.routing.cache import CachedReply, ResponseCache, cache_key

PROMPT = [
    Message(role="system", content="Be brief."),
    Message(role="user", content="What is 2 + 2?"),
]
BASE: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4",
    "messages": PROMPT,
    "temperature": 0.7,
    "max_tokens": 256,
}
REPLY = CachedReply(text="4", finish_reason="stop", prompt_tokens=12, completion_tokens=1)


def _key(**changes: Any) -> str:
    return cache_key(**(BASE | changes))


def test_equal_requests_have_equal_keys() -> None:
    copy = [Message(role=m.role, content=m.content) for m in PROMPT]
    assert _key() == _key(messages=copy)
    assert _key().startswith("sb:cache:")


@pytest.mark.parametrize(
    "changes",
    [
        {"provider": "anthropic"},
        {"model": "gpt-3.5-turbo"},
        {"temperature": 0.0},
        {"temperature": None},
        {"max_tokens": 257},
        {"max_tokens": None},
        {"messages": PROMPT[1:]},
        {"messages": list(reversed(PROMPT))},
        {"messages": [PROMPT[0], Message(role="user", content="What is 2 + 3?")]},
        {"messages": [PROMPT[0], Message(role="assistant", content=PROMPT[1].content)]},
        {"messages": [*PROMPT, Message(role="user", content="")]},
        {"stop": ["\n"]},
    ],
)
def test_any_change_gives_another_key(changes: dict[str, Any]) -> None:
    assert _key(**changes) != _key()


def test_no_stop_sequences_keep_the_key_of_a_request_without_them() -> None:
    assert _key(stop=None) == _key(stop=[]) == _key()


def test_texts_that_only_join_alike_do_not_collide() -> None:
    """The key is over structured JSON, not a concatenation."""
    split_a = [Message(role="user", content="ab"), Message(role="user", content="c")]
    split_b = [Message(role="user", content="a"), Message(role="user", content="bc")]
    assert _key(messages=split_a) != _key(messages=split_b)


def test_a_stored_reply_is_read_back_with_its_ttl(redis_client: redis.Redis) -> None:
    cache = ResponseCache(redis_client, ttl_seconds=60)
    key = _key()
    assert cache.get(key) is None  # a miss
    cache.put(key, REPLY)
    assert cache.get(key) == REPLY  # a hit
    assert 0 < redis_client.ttl(key) <= 60
    assert cache.get(_key(temperature=0.1)) is None
    # Another process (its own client) hits the same entry.
    other = ResponseCache(redis.Redis(connection_pool=redis_client.connection_pool), 60)
    assert other.get(key) == REPLY


def test_an_entry_is_gone_after_its_ttl(redis_client: redis.Redis) -> None:
    cache = ResponseCache(redis_client, ttl_seconds=1)
    cache.put(_key(), REPLY)
    assert cache.get(_key()) == REPLY
    for _ in range(100):  # bounded: checks that it expires, not how fast
        if cache.get(_key()) is None:
            break
        time.sleep(0.05)
    assert cache.get(_key()) is None


def test_unicode_and_odd_text_round_trip(redis_client: redis.Redis) -> None:
    cache = ResponseCache(redis_client, ttl_seconds=60)
    reply = CachedReply(
        text='héllo "✓"\n\x00', finish_reason=None, prompt_tokens=0, completion_tokens=0
    )
    key = _key(messages=[Message(role="user", content="naïve ✓ \ud800")])
    cache.put(key, reply)
    assert cache.get(key) == reply
