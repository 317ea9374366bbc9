"""Moving a reply whose target failed to the next target of its route.

The route was planned at submit (shared/routing/plan.py) and is stored on the reply, so a
redelivered job resumes the same route instead of starting another: the reply row's
`route_step` is the one place that says which target runs, and only the delivery holding the
lease on that step can move it on (workers/outcomes.py fences the store on both).
"""

from __future__ import annotations

import logging

from shared.providers.directory import current_catalog
from shared.providers.errors import ProviderError
from shared.routing.plan import RoutePlan, target_health, usable
from shared.routing.targets import Target
from shared.settings import Settings
from workers.outcomes import NextStep, StoredFor

log = logging.getLogger(__name__)

# The request itself is wrong: every other target would refuse it too.
NOT_RETRIED_ELSEWHERE = frozenset({"bad_request"})


def retry_elsewhere(exc: ProviderError) -> bool:
    """Whether another target may succeed where this one failed after its retries."""
    return exc.kind not in NOT_RETRIED_ELSEWHERE


def record_failure(settings: Settings, target: Target, exc: ProviderError | None) -> None:
    """Count the failure towards the target's cooldown (shared by every process)."""
    retry_after = exc.retry_after if exc is not None and exc.kind == "rate_limited" else None
    try:
        target_health(settings).record_failure(target, retry_after)
    except Exception as exc_:  # Redis away: the fallback still happens, only unshared
        log.warning("target health not recorded: %s", type(exc_).__name__)


def next_step(
    target: StoredFor, plan: RoutePlan, settings: Settings, error: str, *, tokens_sent: bool
) -> NextStep | None:
    """The next usable target after this step, healthy ones first; None when none is left."""
    catalog = current_catalog(settings)
    rest = [
        (step, candidate)
        for step, candidate in enumerate(plan.chain)
        if step > target.step and usable(catalog, candidate)
    ]
    if not rest:
        return None
    try:
        factors = target_health(settings).factors(t for _, t in rest)
    except Exception:
        factors = {}
    healthy = [(step, t) for step, t in rest if factors.get(t, 1.0) > 0]
    step, chosen = (healthy or rest)[0]
    return NextStep(
        step=step,
        provider=chosen.provider,
        model=chosen.model,
        reason=error,
        restart=tokens_sent,
    )


def exhausted(plan: RoutePlan, error: str) -> str:
    if len(plan.chain) == 1:
        return error
    return f"No target of the route is left (each attempt is on the reply); the last: {error}"
