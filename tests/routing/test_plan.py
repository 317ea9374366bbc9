"""Planning a reply's route over an in-memory catalog: pools by weight among healthy
deployments, fallback chains, per-request fallbacks, and auto:cheapest. Health is read from
the real Redis, where the tests put cooldowns as a worker would."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
import redis

from shared.chats.selection import InvalidSelection
from shared.providers.base import RateLimitReport
from shared.providers.snapshot import (
    ENVIRONMENT,
    Catalog,
    ModelRecord,
    ProviderRecord,
    TableState,
    build_catalog,
)
from shared.routing.health import HealthPolicy, TargetHealth
from shared.routing.options import RoutingOptions, TargetIn
from shared.routing.plan import RoutePlan, plan_route
from shared.routing.targets import Deployment, RoutingTables, Target
from shared.settings import Settings, get_settings
from tests.routing.conftest import tolerance

GPT4 = Target("openai", "gpt-4")
GPT35 = Target("openai", "gpt-3.5-turbo")
OPENAI_UNPRICED = Target("openai", "stub-model")
CLAUDE = Target("anthropic", "claude-3-sonnet-20240229")
LLAMA = Target("ollama", "llama3.1:8b-instruct-q8_0")  # its provider is disabled below
ECHO = Target("echo", "echo-1")
PLANS = 1_000


def _model(
    name: str,
    price: tuple[str, str] | None,
    context: int | None = None,
    **capabilities: bool,
) -> ModelRecord:
    return ModelRecord(
        name=name,
        source=ENVIRONMENT,
        is_enabled=True,
        max_context_length=context,
        capabilities=capabilities or None,
        input_cost_per_1k_tokens=Decimal(price[0]) if price else None,
        output_cost_per_1k_tokens=Decimal(price[1]) if price else None,
    )


def _provider(name: str, *models: ModelRecord, enabled: bool = True) -> ProviderRecord:
    return ProviderRecord(
        name=name, adapter=name, source=ENVIRONMENT, is_enabled=enabled, models=models
    )


def _catalog(settings: Settings, routing: RoutingTables | None = None) -> Catalog:
    """The test settings' providers (echo, ollama, openai, anthropic) with model rows that
    give them prices, context lengths and capabilities."""
    providers = {
        "echo": _provider("echo", _model("echo-1", ("0", "0"), 1_000_000, vision=True)),
        "ollama": _provider(
            "ollama", _model(LLAMA.model, ("0", "0"), 1_000_000, vision=True), enabled=False
        ),
        "openai": _provider(
            "openai",
            _model("gpt-4", ("0.03", "0.06"), 8192, vision=True),
            _model("gpt-3.5-turbo", ("0.0005", "0.0015"), 16385, tools=True),
            _model("stub-model", None, 1_000_000, vision=True, tools=True),
        ),
        "anthropic": _provider(
            "anthropic",
            _model(CLAUDE.model, ("0.003", "0.015"), 200_000, vision=True),
            _model("stub-model", None, 1_000_000, vision=True),
        ),
    }
    state = TableState(stamp=(1, None), providers=providers, routing=routing or RoutingTables())
    return build_catalog(settings, state)


@pytest.fixture
def settings() -> Settings:
    return get_settings()


@pytest.fixture
def worker_health(redis_client: redis.Redis) -> TargetHealth:
    """Health as a worker records it (its own TargetHealth on the shared Redis)."""
    return TargetHealth(redis_client, HealthPolicy(3, 60.0, 60.0))


def _plan(settings: Settings, catalog: Catalog, **kwargs: object) -> RoutePlan:
    values: dict[str, object] = {
        "provider": None,
        "model": None,
        "chat_provider": None,
        "chat_model": None,
        "options": None,
    }
    return plan_route(settings, catalog, **(values | kwargs))  # type: ignore[arg-type]


# -- pools ----------------------------------------------------------------------------------


POOL = RoutingTables(
    pools={
        "smart": (Deployment(GPT4, 3), Deployment(CLAUDE, 1), Deployment(LLAMA, 5)),
        "off": (Deployment(LLAMA, 1),),
    }
)


def _firsts(settings: Settings, catalog: Catalog, n: int = PLANS) -> Counter[Target]:
    return Counter(_plan(settings, catalog, model="pool:smart").first for _ in range(n))


def test_a_pool_picks_by_weight_among_its_usable_deployments(
    settings, redis_client, seeded_random
) -> None:
    catalog = _catalog(settings, POOL)
    firsts = _firsts(settings, catalog)
    # The disabled provider's deployment (weight 5) is never picked: 3:1 between the others.
    assert set(firsts) == {GPT4, CLAUDE}
    assert abs(firsts[GPT4] / PLANS - 0.75) <= tolerance(0.75, PLANS)
    plan = _plan(settings, catalog, model="pool:smart")
    assert plan.requested == "pool:smart"
    assert sorted(plan.chain) == sorted([GPT4, CLAUDE])  # the other one is the fallback
    assert "picked by weight among 2 healthy deployments" in (plan.why or "")


def test_a_pool_passes_over_a_cooling_deployment(settings, worker_health, seeded_random) -> None:
    catalog = _catalog(settings, POOL)
    for _ in range(3):
        worker_health.record_failure(GPT4)
    for _ in range(100):
        plan = _plan(settings, catalog, model="pool:smart")
        # Still in the chain, last: if the healthy one fails too it is tried anyway.
        assert plan.chain == (CLAUDE, GPT4)
    assert "among 1 healthy deployments" in (plan.why or "")


def test_a_pool_whose_deployments_all_cool_down_still_has_a_route(settings, worker_health) -> None:
    catalog = _catalog(settings, POOL)
    worker_health.cool_down(GPT4, 60)
    worker_health.cool_down(CLAUDE, 60)
    plan = _plan(settings, catalog, model="pool:smart")
    assert plan.chain == (GPT4, CLAUDE)
    assert "every deployment is cooling down" in (plan.why or "")


def test_low_rate_limit_headroom_lowers_a_deployments_share(
    settings, worker_health, seeded_random
) -> None:
    catalog = _catalog(settings, POOL)
    # 5 % of its requests left: a factor of 0.25, so weights 3 * 0.25 : 1.
    worker_health.record_rate_limit(
        GPT4, RateLimitReport(remaining_requests=5, limit_requests=100, reset_seconds=60)
    )
    firsts = _firsts(settings, catalog)
    expected = 0.75 / 1.75
    assert abs(firsts[GPT4] / PLANS - expected) <= tolerance(expected, PLANS)


@pytest.mark.parametrize("pool", ["pool:nope", "pool:off"])
def test_an_unknown_or_unusable_pool_is_refused(settings, redis_client, pool) -> None:
    with pytest.raises(InvalidSelection) as refused:
        _plan(settings, _catalog(settings, POOL), model=pool)
    assert refused.value.status_code == 422
    assert "Available pools: pool:off, pool:smart" in str(refused.value)


def test_a_chat_on_a_pool_plans_each_message_from_the_pool(
    settings, redis_client, seeded_random
) -> None:
    plan = _plan(settings, _catalog(settings, POOL), chat_model="pool:smart")
    assert plan.requested == "pool:smart" and plan.first in (GPT4, CLAUDE)


# -- fallback chains ------------------------------------------------------------------------


CHAINS = RoutingTables(
    chains={GPT4: (CLAUDE, LLAMA, Target("openai", "gone"), Target("nope", "x"), GPT35)}
)


def test_a_models_chain_follows_it_without_the_unusable_targets(settings, redis_client):
    plan = _plan(settings, _catalog(settings, CHAINS), provider="openai", model="gpt-4")
    assert plan.chain == (GPT4, CLAUDE, GPT35)
    assert plan.requested is None and plan.why is None
    # The chat's own model gets the same chain.
    chat = _plan(settings, _catalog(settings, CHAINS), chat_provider="openai", chat_model="gpt-4")
    assert chat.chain == plan.chain


def test_a_model_without_a_chain_has_itself_alone(settings, redis_client) -> None:
    plan = _plan(settings, _catalog(settings, CHAINS), provider="openai", model="gpt-3.5-turbo")
    assert plan.chain == (GPT35,)


def test_cooling_targets_of_a_chain_move_to_its_end(settings, worker_health) -> None:
    catalog = _catalog(settings, CHAINS)
    worker_health.cool_down(CLAUDE, 60)
    assert _plan(settings, catalog, provider="openai", model="gpt-4").chain == (
        GPT4,
        GPT35,
        CLAUDE,
    )
    worker_health.cool_down(GPT4, 60)
    plan = _plan(settings, catalog, provider="openai", model="gpt-4")
    assert plan.chain == (GPT35, GPT4, CLAUDE)
    assert "openai/gpt-4 is cooling down" in (plan.why or "")


def test_request_fallbacks_replace_the_models_chain(settings, redis_client) -> None:
    options = RoutingOptions(fallbacks=[TargetIn(provider="anthropic", model=CLAUDE.model)])
    plan = _plan(
        settings, _catalog(settings, CHAINS), provider="openai", model="gpt-4", options=options
    )
    assert plan.chain == (GPT4, CLAUDE)
    # An empty list: no fallback at all, even where the model has a chain.
    none = _plan(
        settings,
        _catalog(settings, CHAINS),
        provider="openai",
        model="gpt-4",
        options=RoutingOptions(fallbacks=[]),
    )
    assert none.chain == (GPT4,)


@pytest.mark.parametrize(
    "fallback",
    [("nope", "x"), ("openai", "gone"), (LLAMA.provider, LLAMA.model)],
    ids=["unknown provider", "unknown model", "disabled provider"],
)
def test_a_fallback_that_names_nothing_usable_is_refused(settings, redis_client, fallback) -> None:
    options = RoutingOptions(fallbacks=[TargetIn(provider=fallback[0], model=fallback[1])])
    with pytest.raises(InvalidSelection) as refused:
        _plan(settings, _catalog(settings), provider="openai", model="gpt-4", options=options)
    assert refused.value.status_code == 422
    assert f"{fallback[0]}/{fallback[1]}" in str(refused.value)


def test_cache_is_planned_only_when_asked(settings, redis_client) -> None:
    catalog = _catalog(settings)
    assert _plan(settings, catalog, options=RoutingOptions(cache=True)).cache is True
    assert _plan(settings, catalog).cache is False


# -- auto:cheapest --------------------------------------------------------------------------


def _cheapest(settings: Settings, **options: object) -> RoutePlan:
    routing = RoutingOptions(**options)  # type: ignore[arg-type]
    return _plan(settings, _catalog(settings), model="auto:cheapest", options=routing)


def test_auto_cheapest_picks_the_cheapest_priced_enabled_model_that_fits(
    settings, redis_client
) -> None:
    # Echo (free, with vision) is a demo; ollama is disabled; the stub models have no price.
    plan = _cheapest(settings, capabilities=["vision"])
    assert plan.chain == (CLAUDE, GPT4)
    assert plan.requested == "auto:cheapest"
    why = plan.why or ""
    assert "anthropic/claude-3-sonnet-20240229" in why and "capabilities vision" in why
    assert "cheapest of 2" in why and "$0.003 in + $0.015 out" in why


def test_auto_cheapest_without_needs_takes_the_cheapest_of_all(settings, redis_client):
    plan = _cheapest(settings)
    assert plan.chain == (GPT35, CLAUDE, GPT4)
    assert ECHO not in plan.chain and OPENAI_UNPRICED not in plan.chain


def test_auto_cheapest_honours_the_context_length(settings, redis_client) -> None:
    # gpt-4 (8192) is too short; gpt-3.5-turbo (16385) and claude (200000) fit.
    assert _cheapest(settings, min_context_tokens=10_000).chain == (GPT35, CLAUDE)
    plan = _cheapest(settings, capabilities=["vision"], min_context_tokens=100_000)
    assert plan.chain == (CLAUDE,)
    assert "at least 100000 tokens of context" in (plan.why or "")


def test_auto_cheapest_passes_over_a_cooling_model(settings, worker_health) -> None:
    worker_health.cool_down(CLAUDE, 60)
    plan = _cheapest(settings, capabilities=["vision"])
    assert plan.chain == (GPT4, CLAUDE)
    assert (plan.why or "").startswith("auto:cheapest: openai/gpt-4")


@pytest.mark.parametrize(
    "needs",
    [
        {"capabilities": ["vision"], "min_context_tokens": 500_000},  # only unpriced/echo fit
        {"capabilities": ["teleportation"]},
    ],
)
def test_auto_cheapest_with_nothing_that_fits_is_refused(settings, redis_client, needs):
    with pytest.raises(InvalidSelection) as refused:
        _cheapest(settings, **needs)
    assert refused.value.status_code == 422
    assert "auto:cheapest: no enabled, priced model" in str(refused.value)
