"""Fixtures for the routing tests: a Redis client on the test database, and a seeded random
module for code that draws from it (pool picks), so a share check is deterministic."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest
import redis

from shared.redis_client import sync_redis
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def redis_client(redis_clean: None) -> Iterator[redis.Redis]:
    """The Redis database every process of the test run shares; its sb:* keys are dropped
    before and after the test (redis_clean)."""
    client = sync_redis(TEST_REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def seeded_random() -> Iterator[None]:
    """The random module seeded for the test and restored afterwards."""
    state = random.getstate()
    random.seed(15)
    yield
    random.setstate(state)


def tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    """How far an observed share of n draws may stray from p: `sigmas` binomial standard
    deviations (4 sigma: a correct split fails about once in 16,000 runs)."""
    return sigmas * math.sqrt(p * (1 - p) / n)
