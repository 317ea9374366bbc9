"""What an admin sees of a provider: its row, its key's state (never the key), and what the
catalog this process serves makes of it (usable or not, and why)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.models import ProviderConfigRow, ProviderModel
from shared.providers.availability import provider_availability
from shared.providers.catalog import KEY_SETTINGS, configured_providers
from shared.providers.keys import (
    InvalidKeyToken,
    ProviderKeyBox,
    ProviderKeysUnavailable,
    key_hint,
)
from shared.providers.snapshot import ADMIN, ENVIRONMENT, Catalog
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ModelView:
    model_name: str
    source: str
    is_enabled: bool
    display_name: str | None
    max_context_length: int | None
    capabilities: dict[str, Any] | None
    input_cost_per_1k_tokens: Decimal | None
    output_cost_per_1k_tokens: Decimal | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyState:
    """Whether a key is set and its last characters; never the key."""

    is_set: bool
    hint: str | None
    # "environment": the settings hold it (`setting` names where); "admin": stored encrypted.
    source: str
    setting: str | None


@dataclass(frozen=True, slots=True)
class ProviderView:
    provider_name: str
    adapter: str
    source: str
    display_name: str | None
    api_endpoint: str | None
    is_enabled: bool
    default_model: str | None
    max_tokens: int | None
    temperature_default: float | None
    config_json: dict[str, Any] | None
    key: KeyState
    models: tuple[ModelView, ...]
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether this process would accept a submission to the provider now, and which models."""

    usable: bool
    reason: str | None
    offered: tuple[str, ...]
    default_model: str | None


def redact_endpoint(url: str | None) -> str | None:
    """The endpoint with the password of its userinfo (if any) masked."""
    if not url:
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def model_view(model: ProviderModel) -> ModelView:
    return ModelView(
        model_name=model.model_name,
        source=model.source,
        is_enabled=model.is_enabled,
        display_name=model.display_name,
        max_context_length=model.max_context_length,
        capabilities=model.capabilities,
        input_cost_per_1k_tokens=model.input_cost_per_1k_tokens,
        output_cost_per_1k_tokens=model.output_cost_per_1k_tokens,
        created_at=model.created_at,
    )


def _key_state(row: ProviderConfigRow, settings: Settings) -> KeyState:
    if row.source == ENVIRONMENT:
        config = configured_providers(settings).get(row.provider_name)
        key = config.api_key.get_secret_value() if config and config.api_key else ""
        if row.provider_name in KEY_SETTINGS:
            setting: str | None = KEY_SETTINGS[row.provider_name]
        elif config is not None and config.adapter == "openai_compatible":
            setting = "OPENAI_COMPATIBLE_PROVIDERS"
        else:
            setting = None  # echo and ollama take no key
        return KeyState(bool(key.strip()), key_hint(key) if key else None, ENVIRONMENT, setting)
    if not row.api_key_encrypted:
        return KeyState(False, None, ADMIN, None)
    try:
        hint: str | None = key_hint(
            ProviderKeyBox.from_settings(settings).decrypt(row.api_key_encrypted)
        )
    except (ProviderKeysUnavailable, InvalidKeyToken):
        hint = None  # set, but unreadable here: `availability` says why
    return KeyState(True, hint, ADMIN, None)


def provider_view(row: ProviderConfigRow, settings: Settings) -> ProviderView:
    return ProviderView(
        provider_name=row.provider_name,
        adapter=row.adapter,
        source=row.source,
        display_name=row.display_name,
        api_endpoint=redact_endpoint(row.api_endpoint),
        is_enabled=row.is_enabled,
        default_model=row.default_model,
        max_tokens=row.max_tokens,
        temperature_default=row.temperature_default,
        config_json=row.config_json,
        key=_key_state(row, settings),
        models=tuple(model_view(m) for m in row.models),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def availability(view: ProviderView, catalog: Catalog, settings: Settings) -> Availability:
    """What the catalog this process serves makes of the provider, and why it is unusable
    (shared.providers.availability decides; this adds why a row is not served at all)."""
    name = view.provider_name
    if name not in catalog.configs or catalog.sources.get(name) != view.source:
        if settings.PROVIDERS_ENABLED and view.adapter not in settings.PROVIDERS_ENABLED:
            reason = f"its adapter '{view.adapter}' is not in PROVIDERS_ENABLED"
        else:
            reason = "not in this process's provider catalog yet"
        return Availability(False, reason, (), None)
    state = provider_availability(catalog, name)
    return Availability(state.usable, state.detail, state.offered, state.default_model)
