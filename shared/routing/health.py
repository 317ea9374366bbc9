"""Which targets are healthy, shared by every API and worker process through Redis.

A target (a provider and model: one deployment) that fails FAILURE_THRESHOLD times within
FAILURE_WINDOW_SECONDS cools down for COOLDOWN_SECONDS: pools and fallback chains pass over
it until the key expires, which is the recovery. A provider's rate-limit headers lower the
target's weight until they reset; none left (or a 429's retry-after) cools it down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import redis

from shared.routing.targets import Target

log = logging.getLogger(__name__)


class RateLimitReport(Protocol):
    """What shared.providers.base.RateLimitReport carries (read from response headers)."""

    remaining_requests: int | None
    limit_requests: int | None
    remaining_tokens: int | None
    limit_tokens: int | None
    reset_seconds: float | None


# Below this share of its limit left, a target's weight falls in proportion.
LOW_HEADROOM = 0.2
MIN_FACTOR = 0.05


def _key(target: Target, what: str) -> str:
    return f"sb:health:{target.provider}:{target.model}:{what}"


# INCR the failure count (its window starts at the first failure); at the threshold, cool
# down and start counting again. Atomic, so two workers failing at once cool it down once.
_FAILURE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    failure_threshold: int
    failure_window_seconds: float
    cooldown_seconds: float


class TargetHealth:
    def __init__(self, client: redis.Redis, policy: HealthPolicy) -> None:
        self.client = client
        self.policy = policy
        self._failure = client.register_script(_FAILURE_SCRIPT)

    def record_failure(self, target: Target, retry_after: float | None = None) -> bool:
        """Count a failure; True when the target now cools down."""
        if retry_after is not None and retry_after > 0:
            self.cool_down(target, retry_after)
            return True
        cooled = self._failure(
            keys=[_key(target, "failures"), _key(target, "cooldown")],
            args=[
                int(self.policy.failure_window_seconds * 1000),
                self.policy.failure_threshold,
                int(self.policy.cooldown_seconds * 1000),
            ],
        )
        if cooled:
            log.warning(
                "%s cools down for %.0f s after failures", target, self.policy.cooldown_seconds
            )
        return bool(cooled)

    def cool_down(self, target: Target, seconds: float) -> None:
        self.client.set(_key(target, "cooldown"), "1", px=max(1, int(seconds * 1000)))

    def record_rate_limit(self, target: Target, report: RateLimitReport) -> None:
        factor = headroom(report)
        if factor is None:
            return
        reset = report.reset_seconds if report.reset_seconds and report.reset_seconds > 0 else 1.0
        if factor <= 0:
            self.cool_down(target, reset)
        elif factor < 1:
            self.client.set(_key(target, "headroom"), f"{factor:.4f}", px=int(reset * 1000))

    def factors(self, targets: Iterable[Target]) -> dict[Target, float]:
        """Each target's weight factor now: 0 while cooling down, below 1 while a rate limit
        is low, else 1. One round trip for all of them."""
        targets = list(dict.fromkeys(targets))
        if not targets:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for target in targets:
            pipe.exists(_key(target, "cooldown"))
            pipe.get(_key(target, "headroom"))
        replies = pipe.execute()
        result: dict[Target, float] = {}
        for i, target in enumerate(targets):
            cooling, room = replies[2 * i], replies[2 * i + 1]
            result[target] = 0.0 if cooling else (float(room) if room is not None else 1.0)
        return result


def headroom(report: RateLimitReport) -> float | None:
    """The share of the tighter limit that is left, scaled so that only the last
    LOW_HEADROOM of a limit lowers the weight; None when the report says nothing."""
    shares = [
        remaining / limit
        for remaining, limit in (
            (report.remaining_requests, report.limit_requests),
            (report.remaining_tokens, report.limit_tokens),
        )
        if remaining is not None and limit
    ]
    if not shares:
        return None
    share = min(shares)
    if share <= 0:
        return 0.0
    return max(MIN_FACTOR, min(1.0, share / LOW_HEADROOM))
