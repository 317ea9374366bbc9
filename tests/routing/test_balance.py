"""Weighted choice among deployments: the first pick follows the weights, the rest are the
fallback order, and a weight of 0 never goes first."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shared.routing.balance import weighted_order
from shared.routing.targets import Target
from tests.routing.conftest import tolerance

A, B, C, Z = (Target("p", name) for name in ("a", "b", "c", "zero"))
PICKS = 1_000


@pytest.mark.parametrize(
    "weights",
    [{A: 3, B: 1}, {A: 5, B: 3, C: 2}, {A: 5, B: 3, C: 2, Z: 0}],
    ids=["3:1", "5:3:2", "5:3:2:0"],
)
def test_the_first_pick_follows_the_weights(weights: dict[Target, float]) -> None:
    rng = random.Random(2024)
    weighted = list(weights.items())
    firsts = Counter(weighted_order(weighted, rng)[0] for _ in range(PICKS))
    total = sum(weights.values())
    for target, weight in weights.items():
        expected = weight / total
        share = firsts[target] / PICKS
        assert abs(share - expected) <= max(tolerance(expected, PICKS), 1e-9), (
            target,
            share,
            expected,
        )
    assert firsts[Z] == 0


def test_every_target_is_in_the_order_once_with_zero_weights_last() -> None:
    rng = random.Random(7)
    weighted = [(Z, 0), (A, 5), (B, 3), (Target("p", "zero-too"), 0), (C, 2)]
    for _ in range(200):
        order = weighted_order(weighted, rng)
        assert sorted(order) == sorted(t for t, _ in weighted)
        assert len(order) == len(set(order)) == 5
        # Weight 0 comes after every live one, in the given order.
        assert order[3:] == [Z, Target("p", "zero-too")]


def test_all_weights_zero_keeps_the_given_order() -> None:
    assert weighted_order([(B, 0), (A, 0)], random.Random(1)) == [B, A]


def test_the_second_place_is_the_next_pick_by_weight() -> None:
    """Without replacement: once A (weight 8) is first, B and C share second place 3:1."""
    rng = random.Random(99)
    seconds = Counter()
    for _ in range(PICKS):
        order = weighted_order([(A, 8), (B, 3), (C, 1)], rng)
        if order[0] == A:
            seconds[order[1]] += 1
    n = sum(seconds.values())
    assert n > PICKS / 2
    assert abs(seconds[B] / n - 0.75) <= tolerance(0.75, n)
