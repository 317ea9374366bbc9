"""Target health on the real Redis: cooldowns after failures, recovery when they expire,
rate-limit headroom, and one state for every process (two TargetHealth = two workers)."""

from __future__ import annotations

import time

import pytest
import redis

from shared.providers.base import RateLimitReport
from shared.redis_client import sync_redis
from shared.routing.health import HealthPolicy, TargetHealth
from shared.routing.targets import Target
from tests.conftest import TEST_REDIS_URL

SICK = Target("openai", "gpt-4")
WELL = Target("anthropic", "claude-3-sonnet-20240229")
# A short cooldown, so recovery is seen within a test; the window is long enough that the
# failures of one test always fall in it.
POLICY = HealthPolicy(failure_threshold=3, failure_window_seconds=30.0, cooldown_seconds=0.3)
# Polling bounds: these check that a state ends, not how fast.
POLL_STEP = 0.05
POLL_LIMIT = 200


@pytest.fixture
def health(redis_client: redis.Redis) -> TargetHealth:
    return TargetHealth(redis_client, POLICY)


def _factor(health: TargetHealth, target: Target) -> float:
    return health.factors([target])[target]


def _wait_until(condition) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(POLL_LIMIT):
        if condition():
            return True
        time.sleep(POLL_STEP)
    return False


def test_n_failures_within_the_window_cool_the_target_down_and_only_it(health) -> None:
    assert [health.record_failure(SICK) for _ in range(3)] == [False, False, True]
    assert health.factors([SICK, WELL]) == {SICK: 0.0, WELL: 1.0}


def test_fewer_failures_than_the_threshold_do_not(health) -> None:
    assert health.record_failure(SICK) is False
    assert health.record_failure(SICK) is False
    assert health.factors([SICK, WELL]) == {SICK: 1.0, WELL: 1.0}


def test_a_cooled_target_recovers_when_the_cooldown_expires(health, redis_client) -> None:
    for _ in range(3):
        health.record_failure(SICK)
    assert _factor(health, SICK) == 0.0
    # The cooldown carries the policy's expiry: it ends by itself, with nothing to clear it.
    assert 0 < redis_client.pttl("sb:health:openai:gpt-4:cooldown") <= 300
    assert _wait_until(lambda: _factor(health, SICK) == 1.0)
    # The count started again at the cooldown: one failure after recovery does not cool it.
    assert health.record_failure(SICK) is False
    assert _factor(health, SICK) == 1.0


def test_failures_outside_the_window_do_not_add_up(redis_client) -> None:
    health = TargetHealth(redis_client, HealthPolicy(3, 0.3, 30.0))
    health.record_failure(SICK)
    health.record_failure(SICK)
    assert _wait_until(lambda: not redis_client.exists("sb:health:openai:gpt-4:failures"))
    assert health.record_failure(SICK) is False
    assert _factor(health, SICK) == 1.0


def test_a_failure_with_retry_after_cools_down_at_once_for_that_long(health, redis_client):
    assert health.record_failure(SICK, retry_after=20.0) is True
    assert health.factors([SICK, WELL]) == {SICK: 0.0, WELL: 1.0}
    # Its own length, not the policy's 0.3 s.
    assert 10_000 < redis_client.pttl("sb:health:openai:gpt-4:cooldown") <= 20_000


def test_a_zero_retry_after_counts_as_a_plain_failure(health) -> None:
    assert health.record_failure(SICK, retry_after=0) is False
    assert _factor(health, SICK) == 1.0


def test_low_rate_limit_headroom_lowers_the_factor_until_the_reset(health) -> None:
    # 5 of 100 requests left: a quarter of the last 20 %.
    health.record_rate_limit(
        SICK, RateLimitReport(remaining_requests=5, limit_requests=100, reset_seconds=0.3)
    )
    factor = _factor(health, SICK)
    assert 0 < factor < 1
    assert factor == pytest.approx(0.25)
    assert _factor(health, WELL) == 1.0
    assert _wait_until(lambda: _factor(health, SICK) == 1.0)


def test_the_tighter_of_requests_and_tokens_decides(health) -> None:
    health.record_rate_limit(
        SICK,
        RateLimitReport(
            remaining_requests=90,
            limit_requests=100,
            remaining_tokens=1_000,
            limit_tokens=100_000,
            reset_seconds=30,
        ),
    )
    assert _factor(health, SICK) == pytest.approx(0.05)  # 1 % left: the floor


def test_plenty_of_headroom_or_no_headers_change_nothing(health) -> None:
    health.record_rate_limit(SICK, RateLimitReport(remaining_requests=50, limit_requests=100))
    health.record_rate_limit(WELL, RateLimitReport())
    assert health.factors([SICK, WELL]) == {SICK: 1.0, WELL: 1.0}


def test_no_requests_left_cools_down_until_the_reset(health, redis_client) -> None:
    health.record_rate_limit(
        SICK, RateLimitReport(remaining_requests=0, limit_requests=100, reset_seconds=20)
    )
    assert health.factors([SICK, WELL]) == {SICK: 0.0, WELL: 1.0}
    assert 10_000 < redis_client.pttl("sb:health:openai:gpt-4:cooldown") <= 20_000


def test_two_workers_share_one_state(redis_client) -> None:
    """Each with its own connection, as two worker processes have."""
    other_client = sync_redis(TEST_REDIS_URL)
    try:
        first = TargetHealth(redis_client, POLICY)
        second = TargetHealth(other_client, POLICY)
        assert first.record_failure(SICK) is False
        assert second.record_failure(SICK) is False
        # The third failure, in either process, is the one that cools it down for both.
        assert first.record_failure(SICK) is True
        assert second.factors([SICK]) == {SICK: 0.0}
        second.record_rate_limit(
            WELL, RateLimitReport(remaining_tokens=10, limit_tokens=100, reset_seconds=30)
        )
        assert first.factors([WELL]) == {WELL: pytest.approx(0.5)}
        assert _wait_until(lambda: first.factors([SICK]) == {SICK: 1.0})
        assert second.factors([SICK]) == {SICK: 1.0}
    finally:
        other_client.close()


def test_factors_of_nothing_is_empty_and_duplicates_are_asked_once(health) -> None:
    assert health.factors([]) == {}
    assert health.factors([SICK, SICK]) == {SICK: 1.0}
