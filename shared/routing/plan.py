"""A reply's route, planned at submit: the targets to try in order, and why.

The first target is where the job is sent; the worker moves to the next one when a target
fails (workers/fallback.py). Planning reads the catalog (in memory) and, for the targets'
health, one Redis round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.chats.selection import InvalidSelection, resolve_selection
from shared.providers.snapshot import Catalog
from shared.redis_client import sync_redis
from shared.routing import cheapest as cost
from shared.routing.balance import weighted_order
from shared.routing.health import HealthPolicy, TargetHealth
from shared.routing.options import RoutingOptions
from shared.routing.targets import AUTO_CHEAPEST, POOL_PREFIX, Target
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    chain: tuple[Target, ...]
    requested: str | None = None  # the virtual model asked for: pool:<name>, auto:cheapest
    why: str | None = None
    cache: bool = False
    skipped: tuple[str, ...] = field(default=())

    @property
    def first(self) -> Target:
        return self.chain[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "chain": [t.as_json() for t in self.chain],
            "requested": self.requested,
            "why": self.why,
            "cache": self.cache,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, provider: str, model: str) -> RoutePlan:
        """A reply stored before routing existed has no plan: its own target alone."""
        if not data:
            return cls((Target(provider, model),))
        return cls(
            tuple(Target.from_json(t) for t in data["chain"]),
            requested=data.get("requested"),
            why=data.get("why"),
            cache=bool(data.get("cache")),
        )


def target_health(settings: Settings) -> TargetHealth:
    return _target_health(
        settings.REDIS_URL,
        HealthPolicy(
            settings.TARGET_FAILURE_THRESHOLD,
            settings.TARGET_FAILURE_WINDOW_SECONDS,
            settings.TARGET_COOLDOWN_SECONDS,
        ),
    )


# Cached on the values it is built from: Settings is unhashable, so caching on it raised a
# TypeError on every call, which callers took for "Redis away" (no cooldown ever counted).
@lru_cache
def _target_health(redis_url: str, policy: HealthPolicy) -> TargetHealth:
    return TargetHealth(sync_redis(redis_url), policy)


def is_virtual(model: str | None) -> bool:
    return model is not None and (model.startswith(POOL_PREFIX) or model == AUTO_CHEAPEST)


def usable(catalog: Catalog, target: Target) -> bool:
    config = catalog.configs.get(target.provider)
    return config is not None and config.enabled and target.model in config.models


def check_virtual(catalog: Catalog, model: str) -> None:
    """Refuse a virtual model that names nothing (a chat may keep one as its model)."""
    if model.startswith(POOL_PREFIX):
        name = model.removeprefix(POOL_PREFIX)
        if not any(usable(catalog, d.target) for d in catalog.routing.pools.get(name, ())):
            known = ", ".join(POOL_PREFIX + p for p in sorted(catalog.routing.pools)) or "none"
            raise InvalidSelection(
                f"Pool '{name}' has no enabled deployment. Available pools: {known}"
            )


def user_fallbacks(catalog: Catalog, options: RoutingOptions | None) -> list[Target]:
    """The fallbacks a user named, each an enabled provider and model (else 422)."""
    if options is None or options.fallbacks is None:
        return []
    targets = [Target(t.provider, t.model) for t in options.fallbacks]
    for target in targets:
        if not usable(catalog, target):
            raise InvalidSelection(f"Fallback {target} is not an enabled provider and model")
    return targets


def _factors(settings: Settings, targets: Sequence[Target]) -> dict[Target, float]:
    try:
        return target_health(settings).factors(targets)
    except Exception as exc:  # Redis away: plan as if all were healthy; the enqueue will say
        log.warning("target health unavailable: %s", type(exc).__name__)
        return {}


def _healthy_first(settings: Settings, targets: list[Target]) -> tuple[list[Target], list[str]]:
    factors = _factors(settings, targets)
    healthy = [t for t in targets if factors.get(t, 1.0) > 0]
    cooling = [t for t in targets if factors.get(t, 1.0) <= 0]
    return healthy + cooling, [str(t) for t in cooling]


def plan_route(
    settings: Settings,
    catalog: Catalog,
    *,
    provider: str | None,
    model: str | None,
    chat_provider: str | None,
    chat_model: str | None,
    options: RoutingOptions | None,
) -> RoutePlan:
    """Raises InvalidSelection (422) for a request that names nothing usable."""
    options = options or RoutingOptions()
    wanted = model if model is not None else (chat_model if provider is None else None)
    if wanted is not None and wanted.startswith(POOL_PREFIX):
        return _pool(settings, catalog, wanted, options)
    if wanted == AUTO_CHEAPEST:
        return _cheapest(settings, catalog, options)
    selection = resolve_selection(
        settings,
        provider=provider,
        model=model,
        fallback_provider=chat_provider,
        fallback_model=None if is_virtual(chat_model) else chat_model,
    )
    first = Target(selection.provider, selection.model)
    if options.fallbacks is not None:
        fallbacks = user_fallbacks(catalog, options)
    else:
        # An admin's chain may name a target disabled since: it is passed over.
        fallbacks = [t for t in catalog.routing.chains.get(first, ()) if usable(catalog, t)]
    chain = list(dict.fromkeys([first, *fallbacks]))
    why = None
    if len(chain) > 1:
        chain, cooling = _healthy_first(settings, chain)
        if chain[0] != first:
            why = f"{first} is cooling down after failures; starting at {chain[0]}"
    return RoutePlan(tuple(chain), why=why, cache=bool(options.cache))


def _pool(settings: Settings, catalog: Catalog, wanted: str, options: RoutingOptions) -> RoutePlan:
    check_virtual(catalog, wanted)
    name = wanted.removeprefix(POOL_PREFIX)
    deployments = [d for d in catalog.routing.pools[name] if usable(catalog, d.target)]
    factors = _factors(settings, [d.target for d in deployments])
    weighted = [(d.target, d.weight * factors.get(d.target, 1.0)) for d in deployments]
    order = weighted_order(weighted)
    healthy = sum(1 for _, w in weighted if w > 0)
    if healthy:
        why = f"{wanted}: {order[0]} picked by weight among {healthy} healthy deployments"
    else:
        why = f"{wanted}: every deployment is cooling down; trying {order[0]} anyway"
    # A user's own fallbacks come after the whole pool.
    chain = tuple(dict.fromkeys([*order, *user_fallbacks(catalog, options)]))
    return RoutePlan(chain, requested=wanted, why=why, cache=bool(options.cache))


def _cheapest(settings: Settings, catalog: Catalog, options: RoutingOptions) -> RoutePlan:
    capabilities = options.capabilities or []
    found = cost.cheapest(
        catalog, capabilities, options.min_context_tokens, settings.DEFAULT_CONTEXT_TOKENS
    )
    if not found:
        raise InvalidSelection(
            "auto:cheapest: no enabled, priced model has "
            + (f"capabilities {', '.join(capabilities)} and " if capabilities else "")
            + f"at least {options.min_context_tokens or 0} tokens of context"
        )
    chain, _ = _healthy_first(settings, [c.target for c in found[: cost.CANDIDATES_KEPT]])
    chosen = next(c for c in found if c.target == chain[0])
    why = cost.explain(chosen, len(found), capabilities, options.min_context_tokens)
    chain = list(dict.fromkeys([*chain, *user_fallbacks(catalog, options)]))
    return RoutePlan(tuple(chain), requested=AUTO_CHEAPEST, why=why, cache=bool(options.cache))
