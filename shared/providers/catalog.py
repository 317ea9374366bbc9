"""Which providers this deployment has, built from `Settings` (no network, no SDK imports).

Disabled providers stay in the result with `enabled=False`, so callers can tell "disabled"
from "unknown". Providers whose adapter `PROVIDERS_ENABLED` leaves out are not in the result
at all: workers never load that adapter, so the API must neither list nor accept them, and
no queue is declared for them.
"""

from __future__ import annotations

from pydantic import SecretStr

from shared.providers.base import ProviderConfig
from shared.providers.endpoints import UnsafeEndpoint, check_endpoint_url
from shared.settings import InvalidSettings, Settings

# The settings that hold the built-in providers' keys: without one the provider is disabled.
KEY_SETTINGS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def provider_configs(settings: Settings) -> dict[str, ProviderConfig]:
    return apply_feature_flag(loadable(configured_providers(settings), settings), settings)


def configured_providers(settings: Settings) -> dict[str, ProviderConfig]:
    """Every provider the settings describe, before PROVIDERS_ENABLED and the feature flag."""
    common = {
        "timeout": settings.PROVIDER_TIMEOUT_SECONDS,
        "max_retries": settings.PROVIDER_MAX_RETRIES,
    }
    defaults = settings.default_models
    configs: dict[str, ProviderConfig] = {}
    _check_endpoints(settings)

    if settings.ECHO_ENABLED:
        configs["echo"] = ProviderConfig(
            name="echo",
            adapter="echo",
            models=tuple(settings.ECHO_MODELS),
            default_model=defaults["echo"],
            options=(("token_delay_ms", settings.ECHO_TOKEN_DELAY_MS),),
            **common,
        )
    configs["ollama"] = ProviderConfig(
        name="ollama",
        adapter="ollama",
        api_endpoint=settings.OLLAMA_API_URL,
        models=tuple(settings.OLLAMA_MODELS),
        default_model=defaults["ollama"],
        **common,
    )
    configs["anthropic"] = ProviderConfig(
        name="anthropic",
        adapter="anthropic",
        api_key=settings.ANTHROPIC_API_KEY,
        api_endpoint=settings.ANTHROPIC_BASE_URL,
        models=tuple(settings.ANTHROPIC_MODELS),
        default_model=defaults["anthropic"],
        enabled=_has_key(settings.ANTHROPIC_API_KEY),
        options=(("default_max_tokens", settings.ANTHROPIC_DEFAULT_MAX_TOKENS),),
        **common,
    )
    configs["openai"] = ProviderConfig(
        name="openai",
        adapter="openai",
        api_key=settings.OPENAI_API_KEY,
        api_endpoint=settings.OPENAI_API_BASE,
        models=tuple(settings.OPENAI_MODELS),
        default_model=defaults["openai"],
        enabled=_has_key(settings.OPENAI_API_KEY),
        **common,
    )
    # Settings guarantee compatible names are unique and never a built-in provider's.
    for compatible in settings.OPENAI_COMPATIBLE_PROVIDERS:
        configs[compatible.name] = ProviderConfig(
            name=compatible.name,
            adapter="openai_compatible",
            api_key=compatible.api_key,
            api_endpoint=compatible.base_url,
            models=tuple(compatible.models),
            default_model=defaults[compatible.name],
            enabled=compatible.enabled,
            **common,
        )
    return configs


def loadable(configs: dict[str, ProviderConfig], settings: Settings) -> dict[str, ProviderConfig]:
    """The providers whose adapter PROVIDERS_ENABLED lets workers load (empty: all)."""
    allowed = set(settings.PROVIDERS_ENABLED)
    if not allowed:
        return configs
    return {name: config for name, config in configs.items() if config.adapter in allowed}


def apply_feature_flag(
    configs: dict[str, ProviderConfig], settings: Settings
) -> dict[str, ProviderConfig]:
    """MULTI_PROVIDER_ENABLED=false leaves only DEFAULT_PROVIDER enabled."""
    if settings.MULTI_PROVIDER_ENABLED:
        return configs
    return {
        name: config
        if name == settings.DEFAULT_PROVIDER or not config.enabled
        else config.model_copy(update={"enabled": False})
        for name, config in configs.items()
    }


def default_provider_problem(settings: Settings) -> str | None:
    """Why DEFAULT_PROVIDER cannot take requests with these settings, or None if it can.

    The value is quoted only when it names a provider the settings describe: an unknown value
    could be anything pasted into the wrong variable, a key included.
    """
    name = settings.DEFAULT_PROVIDER
    described = configured_providers(settings)
    config = provider_configs(settings).get(name)
    if config is not None and config.enabled:
        return None
    if config is not None:
        if name in KEY_SETTINGS:
            return f"DEFAULT_PROVIDER is {name!r}, which has no API key: set {KEY_SETTINGS[name]}"
        return (
            f"DEFAULT_PROVIDER is {name!r}, which is disabled "
            "(enabled: false in OPENAI_COMPATIBLE_PROVIDERS)"
        )
    if name in described:
        return (
            f"DEFAULT_PROVIDER is {name!r}, whose adapter {described[name].adapter!r} is not "
            "in PROVIDERS_ENABLED"
        )
    if name == "echo":
        return "DEFAULT_PROVIDER is 'echo', but ECHO_ENABLED is false"
    available = sorted(n for n, c in provider_configs(settings).items() if c.enabled)
    return "DEFAULT_PROVIDER does not name a configured provider; configured and enabled: " + (
        ", ".join(available) or "none"
    )


def check_default_provider(settings: Settings) -> None:
    """Refuse, at start-up, settings whose default provider cannot take requests."""
    problem = default_provider_problem(settings)
    if problem is not None:
        raise InvalidSettings(
            f"{problem}. Requests that name no provider go to DEFAULT_PROVIDER; set it to a "
            "configured, enabled provider."
        )


def _check_endpoints(settings: Settings) -> None:
    """Refuse endpoint settings the SSRF policy refuses (shared/providers/endpoints.py), so a
    bad value stops the process at start-up instead of failing each reply. Names are not
    resolved here (DNS at start-up may not be ready); the connection guard checks them on
    every connect. The value is not quoted: it may carry a password in its userinfo."""
    endpoints = {
        "OLLAMA_API_URL": settings.OLLAMA_API_URL,
        "OPENAI_API_BASE": settings.OPENAI_API_BASE,
    }
    if settings.ANTHROPIC_BASE_URL:
        endpoints["ANTHROPIC_BASE_URL"] = settings.ANTHROPIC_BASE_URL
    for compatible in settings.OPENAI_COMPATIBLE_PROVIDERS:
        endpoints[f"OPENAI_COMPATIBLE_PROVIDERS ({compatible.name}) base_url"] = compatible.base_url
    for setting, url in endpoints.items():
        try:
            check_endpoint_url(url, allow_private=settings.PROVIDER_ENDPOINTS_ALLOW_PRIVATE)
        except UnsafeEndpoint as exc:
            raise InvalidSettings(f"{setting}: endpoint refused: {exc.reason}") from None


def _has_key(key: SecretStr | None) -> bool:
    return key is not None and bool(key.get_secret_value().strip())
