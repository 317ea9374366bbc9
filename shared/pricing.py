"""What a call cost, in exact decimals, and the shipped price list.

The price list seeds `provider_models` prices when the environment sync first adds a model;
from then on the row is the price (admins edit it; see shared/providers/snapshot.py), and a
change applies to usage recorded after it. Prices are USD list prices per 1,000 tokens at
time of writing (from anthropic.com/pricing and openai.com/api/pricing). A model with no
entry has no price: `cost_of` then returns None, never a made-up zero.

Local providers (`ollama`, and the `echo` demo) are priced at exactly zero on purpose: the
call costs no money per token, and a real zero lets cost totals include them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

COST_QUANTUM = Decimal("0.000000000001")  # ExactMoney: 12 decimals
FREE_PROVIDERS = frozenset({"ollama", "echo"})


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_1k: Decimal
    output_per_1k: Decimal
    currency: str = "USD"


def _per_million(input_usd: str, output_usd: str) -> ModelPrice:
    # Providers publish prices per million tokens; the table is kept per 1k.
    return ModelPrice(Decimal(input_usd) / 1000, Decimal(output_usd) / 1000)


FREE = ModelPrice(Decimal("0"), Decimal("0"))

PRICES: dict[str, dict[str, ModelPrice]] = {
    "anthropic": {
        "claude-3-opus-20240229": _per_million("15", "75"),
        "claude-3-sonnet-20240229": _per_million("3", "15"),
        "claude-3-haiku-20240307": _per_million("0.25", "1.25"),
        "claude-3-5-sonnet-20240620": _per_million("3", "15"),
        "claude-3-5-sonnet-20241022": _per_million("3", "15"),
        "claude-3-5-haiku-20241022": _per_million("0.80", "4"),
        "claude-3-7-sonnet-20250219": _per_million("3", "15"),
        "claude-sonnet-4-20250514": _per_million("3", "15"),
        "claude-opus-4-20250514": _per_million("15", "75"),
    },
    "openai": {
        "gpt-4": _per_million("30", "60"),
        "gpt-3.5-turbo": _per_million("0.50", "1.50"),
        "gpt-4-turbo": _per_million("10", "30"),
        "gpt-4o": _per_million("2.50", "10"),
        "gpt-4o-mini": _per_million("0.15", "0.60"),
        "gpt-4.1": _per_million("2", "8"),
        "gpt-4.1-mini": _per_million("0.40", "1.60"),
        "gpt-4.1-nano": _per_million("0.10", "0.40"),
    },
}


def seed_price(provider: str, model: str, adapter: str | None = None) -> ModelPrice | None:
    """The shipped price of `model` on `provider` (a provider name), or None when unknown.
    A provider served by a local adapter (any Ollama server, echo) is free whatever its name."""
    if provider in FREE_PROVIDERS or adapter in FREE_PROVIDERS:
        return FREE
    return PRICES.get(provider, {}).get(model)


def cost_of(price: ModelPrice | None, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """Exact cost (12 decimal places: every digit a per-1k price can give); None when there
    is no price."""
    if price is None:
        return None
    raw = (price.input_per_1k * prompt_tokens + price.output_per_1k * completion_tokens) / 1000
    return raw.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def format_cost(cost: Decimal) -> str:
    """Plain notation with at least 6 decimals: "0.000000", "0.000035", "0.000000035"."""
    text = format(cost.normalize(), "f")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(6, '0')}"
