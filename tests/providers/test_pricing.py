from __future__ import annotations

from decimal import Decimal

from shared.pricing import ModelPrice, cost_of, seed_price


def test_plan_default_models_have_prices() -> None:
    for provider, model in [
        ("anthropic", "claude-3-opus-20240229"),
        ("anthropic", "claude-3-sonnet-20240229"),
        ("openai", "gpt-4"),
        ("openai", "gpt-3.5-turbo"),
    ]:
        price = seed_price(provider, model)
        assert price is not None and price.input_per_1k > 0 and price.output_per_1k > 0


def test_cost_is_exact_decimal() -> None:
    price = seed_price("openai", "gpt-4")
    assert price == ModelPrice(Decimal("0.03"), Decimal("0.06"))
    assert cost_of(price, 1000, 500) == Decimal("0.060000")
    assert cost_of(seed_price("anthropic", "claude-3-sonnet-20240229"), 7, 3) == Decimal("0.000066")


def test_sub_micro_costs_are_kept_so_sums_are_exact() -> None:
    price = seed_price("openai", "gpt-3.5-turbo")
    one_prompt_token = cost_of(price, 1, 0)
    assert one_prompt_token == Decimal("0.0000005")  # rounded to 0.000001 at 6 decimals
    # A day of 1000 one-token replies costs exactly 1000 times one, not 1000 roundings.
    assert sum(cost_of(price, 1, 0) or Decimal(0) for _ in range(1000)) == Decimal("0.0005")
    assert cost_of(price, 1, 1) == Decimal("0.000002")


def test_unknown_paid_model_has_no_price_and_no_cost() -> None:
    assert seed_price("openai", "gpt-unknown") is None
    assert seed_price("groq", "llama-3.1-8b") is None
    assert cost_of(None, 100, 100) is None


def test_local_models_are_free_not_unknown() -> None:
    for provider in ("ollama", "echo"):
        price = seed_price(provider, "anything")
        assert price is not None
        assert cost_of(price, 1000, 1000) == Decimal("0")
