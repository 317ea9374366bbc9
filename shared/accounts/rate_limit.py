"""Attempt limits for the unauthenticated endpoints that run argon2 (login, registration).

A fixed one-minute window per key, counted in Redis so every API process shares it. The
check runs before any password is hashed or verified: argon2 runs on the API's thread pool,
and a flood that got that far would already hold the threads it is meant to be kept from.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.errors import AppError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
KEY_PREFIX = "sb:ratelimit"
# Waiting longer on a stuck Redis than a login takes would make the limiter the outage.
REDIS_WAIT_SECONDS = 1.0
# While Redis is away every attempt would log; once per interval says the same.
WARNING_INTERVAL_SECONDS = 30.0


class RateLimited(AppError):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    per_window: int


class AuthRateLimiter:
    def __init__(self) -> None:
        self._last_warning = -WARNING_INTERVAL_SECONDS

    async def check(
        self,
        redis: aioredis.Redis,
        *,
        action: str,
        client_ip: str | None,
        email: str,
        per_ip: int,
        per_account: int,
    ) -> None:
        """Count this attempt; raise RateLimited if it is over a limit (0: no limit).

        Fails open: with Redis unreachable the attempt is allowed and a warning logged, so a
        Redis blip cannot lock every user out.
        """
        limits = []
        if per_ip and client_ip:
            limits.append(Limit(f"{KEY_PREFIX}:{action}:ip:{client_ip}", per_ip))
        if per_account:
            limits.append(Limit(f"{KEY_PREFIX}:{action}:account:{_account_id(email)}", per_account))
        if not limits:
            return
        try:
            async with asyncio.timeout(REDIS_WAIT_SECONDS):
                counts = await self._count(redis, limits)
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn_unavailable(action, exc)
            return
        retry_after = max(
            (
                ttl
                for limit, (count, ttl) in zip(limits, counts, strict=True)
                if count > limit.per_window
            ),
            default=None,
        )
        if retry_after is not None:
            raise RateLimited(retry_after)

    async def _count(self, redis: aioredis.Redis, limits: list[Limit]) -> list[tuple[int, int]]:
        # One round trip. SET NX EX opens a window only when none is open (INCR keeps its
        # TTL), so the window's end is Redis' clock, the same for every API host.
        pipe = redis.pipeline(transaction=True)
        for limit in limits:
            pipe.set(limit.key, 0, ex=WINDOW_SECONDS, nx=True)
            pipe.incr(limit.key)
            pipe.ttl(limit.key)
        replies = await pipe.execute()
        counts = []
        for index in range(len(limits)):
            _, count, ttl = replies[3 * index : 3 * index + 3]
            counts.append((int(count), int(ttl) if int(ttl) > 0 else WINDOW_SECONDS))
        return counts

    def _warn_unavailable(self, action: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning(
                "auth rate limit not applied to %s: Redis unavailable (%s); allowing attempts",
                action,
                type(exc).__name__,
            )


def _account_id(email: str) -> str:
    # Hashed so Redis key names carry no email addresses.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


auth_rate_limiter = AuthRateLimiter()
