"""Weighted choice among deployments."""

from __future__ import annotations

import random
from collections.abc import Sequence

from shared.routing.targets import Target


def weighted_order(
    weighted: Sequence[tuple[Target, float]], rng: random.Random | None = None
) -> list[Target]:
    """All targets, in a random order where each comes first with probability weight / sum.

    Efraimidis-Spirakis sampling without replacement: each item's key is u^(1/w); sorting by
    key gives the first pick by weight, and the rest in the order fallbacks should try them.
    Items of weight 0 come last, in their given order.
    """
    rng = rng or random
    live = [(rng.random() ** (1.0 / w), t) for t, w in weighted if w > 0]
    live.sort(key=lambda pair: pair[0], reverse=True)
    return [t for _, t in live] + [t for t, w in weighted if w <= 0]
