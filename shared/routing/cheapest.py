"""`auto:cheapest`: the cheapest enabled model that has what the request needs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.providers.snapshot import Catalog
from shared.routing.targets import Target

# How many candidates the route keeps, cheapest first: the rest are its fallbacks.
CANDIDATES_KEPT = 5


@dataclass(frozen=True, slots=True)
class Candidate:
    target: Target
    input_per_1k: Decimal
    output_per_1k: Decimal

    @property
    def blended(self) -> Decimal:
        # Replies are billed on both sides; equal weight is the common way to rank list
        # prices when the request's own token split is not known yet (the prompt is built
        # by the worker, from the chat's history).
        return self.input_per_1k + self.output_per_1k


def cheapest(
    catalog: Catalog,
    capabilities: list[str],
    min_context_tokens: int | None,
    default_context_tokens: int,
) -> list[Candidate]:
    """Enabled, priced models that have every capability and enough context, cheapest first.

    A model with no price is left out: an unknown price is not a low one. The demo provider
    is left out too: its echo is free but answers nothing.
    """
    found: list[Candidate] = []
    for name, config in catalog.configs.items():
        if not config.enabled or config.adapter == "echo":
            continue
        records = catalog.models.get(name, {})
        for model in config.models:
            price = catalog.price(name, model)
            if price is None:
                continue
            record = records.get(model)
            caps = (record.capabilities if record else None) or {}
            if not all(caps.get(c) for c in capabilities):
                continue
            context = (record.max_context_length if record else None) or default_context_tokens
            if min_context_tokens is not None and context < min_context_tokens:
                continue
            found.append(Candidate(Target(name, model), price.input_per_1k, price.output_per_1k))
    found.sort(key=lambda c: (c.blended, c.target))
    return found


def explain(
    chosen: Candidate, considered: int, capabilities: list[str], context: int | None
) -> str:
    needs = []
    if capabilities:
        needs.append("capabilities " + ", ".join(capabilities))
    if context:
        needs.append(f"at least {context} tokens of context")
    fits = f" with {' and '.join(needs)}" if needs else ""
    return (
        f"auto:cheapest: {chosen.target}, the cheapest of {considered} enabled priced "
        f"model{'s' if considered != 1 else ''}{fits} "
        f"(${chosen.input_per_1k} in + ${chosen.output_per_1k} out per 1k tokens)"
    )
