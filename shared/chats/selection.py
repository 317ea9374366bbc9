"""Which provider and model a request goes to, and whether that choice is allowed."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import AppError
from shared.providers.directory import current_catalog
from shared.settings import Settings


class InvalidSelection(AppError):
    status_code = 422


@dataclass(frozen=True, slots=True)
class Selection:
    provider: str
    model: str


def resolve_selection(
    settings: Settings,
    *,
    provider: str | None,
    model: str | None,
    fallback_provider: str | None = None,
    fallback_model: str | None = None,
) -> Selection:
    """Request values win, then the chat's (fallbacks), then settings.

    With MULTI_PROVIDER_ENABLED off every request goes to DEFAULT_PROVIDER, as the
    Ollama-only service did; that provider must still be configured and enabled.
    """
    catalog = current_catalog(settings)
    configs = catalog.configs
    if settings.MULTI_PROVIDER_ENABLED:
        name = provider or fallback_provider or settings.DEFAULT_PROVIDER
    else:
        name = settings.DEFAULT_PROVIDER
    enabled = catalog.enabled
    config = configs.get(name)
    if config is None:
        raise InvalidSelection(
            f"Unknown provider '{name}'. Available providers: {', '.join(enabled)}"
        )
    if not config.enabled:
        raise InvalidSelection(
            f"Provider '{name}' is disabled. Available providers: {', '.join(enabled)}"
        )
    if not settings.MULTI_PROVIDER_ENABLED:
        # The Ollama-only service ignored a model it did not offer instead of refusing it.
        chosen = model if model in config.models else config.default_model
        if chosen is None:
            raise InvalidSelection(f"Provider '{name}' has no default model")
        return Selection(name, chosen)

    if model is None and provider is None and fallback_model is not None:
        model = fallback_model
    chosen = model or config.default_model or settings.default_models.get(name)
    if chosen is None or chosen not in config.models:
        raise InvalidSelection(
            f"Model '{chosen}' is not available for provider '{name}'. "
            f"Available models: {', '.join(config.models)}"
        )
    return Selection(name, chosen)
