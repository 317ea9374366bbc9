"""Which providers this deployment has, built from `Settings` (no network, no SDK imports).

Disabled providers stay in the result with `enabled=False`, so callers can tell "disabled"
from "unknown".
"""

from __future__ import annotations

from pydantic import SecretStr

from shared.providers.base import ProviderConfig
from shared.settings import Settings


def provider_configs(settings: Settings) -> dict[str, ProviderConfig]:
    common = {
        "timeout": settings.PROVIDER_TIMEOUT_SECONDS,
        "max_retries": settings.PROVIDER_MAX_RETRIES,
    }
    defaults = settings.default_models
    configs: dict[str, ProviderConfig] = {}

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
    for compatible in settings.OPENAI_COMPATIBLE_PROVIDERS:
        if compatible.name in configs:
            # A compatible server may not shadow a built-in provider's name.
            raise ValueError(f"OPENAI_COMPATIBLE_PROVIDERS: name {compatible.name!r} is taken")
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
    return apply_feature_flag(configs, settings)


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


def _has_key(key: SecretStr | None) -> bool:
    return key is not None and bool(key.get_secret_value().strip())
