"""The virtual models a user may ask for, as `GET /routes` lists them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.providers.snapshot import Catalog
from shared.routing import cheapest
from shared.routing.plan import usable
from shared.routing.targets import AUTO_CHEAPEST, POOL_PREFIX


@dataclass(frozen=True, slots=True)
class VirtualModel:
    model: str
    kind: str  # "pool" or "cost"
    description: str
    targets: int  # how many usable targets it may route to now


def virtual_models(catalog: Catalog, default_context_tokens: int) -> list[VirtualModel]:
    found = []
    for name, deployments in sorted(catalog.routing.pools.items()):
        live = [d for d in deployments if usable(catalog, d.target)]
        if live:
            found.append(
                VirtualModel(
                    POOL_PREFIX + name,
                    "pool",
                    f"weighted pool of {len(live)} deployment{'s' if len(live) != 1 else ''}",
                    len(live),
                )
            )
    priced = cheapest.cheapest(catalog, [], None, default_context_tokens)
    if priced:
        found.append(
            VirtualModel(
                AUTO_CHEAPEST,
                "cost",
                "the cheapest enabled model that has what the request needs",
                len(priced),
            )
        )
    return found
