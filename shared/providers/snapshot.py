"""The providers a process serves: the provider tables, read once, merged with its settings.

Pure functions over plain data (no database, no network): `shared.providers.directory`
loads a `TableState` from the database and keeps the `Catalog` built from it current.

Environment providers (`source = environment`) come from the settings, which keep their
endpoint and key; their row adds what an admin may change: enabled, display name, max tokens,
temperature, which models are offered and at what price. Admin providers
(`source = admin`) come from their row alone, key included (decrypted here, in memory only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from shared.pricing import ModelPrice, seed_price
from shared.providers.base import ProviderConfig
from shared.providers.catalog import (
    KEY_SETTINGS,
    apply_feature_flag,
    configured_providers,
    loadable,
)
from shared.providers.keys import InvalidKeyToken, ProviderKeyBox, ProviderKeysUnavailable
from shared.routing.targets import RoutingTables
from shared.settings import Settings

log = logging.getLogger(__name__)

ENVIRONMENT = "environment"
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ModelRecord:
    name: str
    source: str
    is_enabled: bool
    display_name: str | None = None
    max_context_length: int | None = None
    capabilities: dict[str, Any] | None = None
    input_cost_per_1k_tokens: Decimal | None = None
    output_cost_per_1k_tokens: Decimal | None = None

    @property
    def price(self) -> ModelPrice | None:
        # A price needs both halves: half a price would bill the other half as free.
        if self.input_cost_per_1k_tokens is None or self.output_cost_per_1k_tokens is None:
            return None
        return ModelPrice(self.input_cost_per_1k_tokens, self.output_cost_per_1k_tokens)


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    name: str
    adapter: str
    source: str
    is_enabled: bool
    display_name: str | None = None
    api_endpoint: str | None = None
    api_key_encrypted: str | None = None
    default_model: str | None = None
    max_tokens: int | None = None
    temperature_default: float | None = None
    config_json: dict[str, Any] | None = None
    models: tuple[ModelRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why a provider takes no submissions: `reason` short, for users; `detail` says what an
    operator can do about it."""

    reason: str
    detail: str


DISABLED_BY_ADMIN = Unavailable("disabled by an admin", "disabled by an admin")
ONLY_DEFAULT_PROVIDER = Unavailable(
    "only the default provider takes requests",
    "MULTI_PROVIDER_ENABLED is false: only DEFAULT_PROVIDER takes requests",
)
KEY_UNREADABLE = Unavailable(
    "its stored API key cannot be read",
    "its stored key cannot be decrypted: PROVIDER_KEYS_SECRET is not set, or no longer holds "
    "the key that encrypted it",
)


def _settings_reason(config: ProviderConfig) -> Unavailable:
    """Why the settings alone disable an environment provider."""
    if config.name in KEY_SETTINGS:
        return Unavailable("no API key", f"no API key: set {KEY_SETTINGS[config.name]}")
    if config.adapter == "openai_compatible":
        return Unavailable(
            "disabled in the settings", "enabled: false in OPENAI_COMPATIBLE_PROVIDERS"
        )
    return Unavailable("disabled in the settings", "disabled in the settings")


# (version, updated_at): a truncated and re-seeded table may repeat a version, never both.
Stamp = tuple[int, datetime | None]


@dataclass(frozen=True, slots=True)
class TableState:
    """The provider tables as one process last read them."""

    stamp: Stamp
    providers: dict[str, ProviderRecord] = field(default_factory=dict)
    routing: RoutingTables = field(default_factory=RoutingTables)


@dataclass(frozen=True, slots=True)
class Catalog:
    """What one process serves, by provider name. Disabled providers are kept (`enabled=False`)
    so callers can tell "disabled" from "unknown"."""

    configs: dict[str, ProviderConfig]
    prices: dict[str, dict[str, ModelPrice | None]]
    sources: dict[str, str]
    stamp: Stamp | None
    # Why each provider with `enabled=False` is disabled.
    disabled: dict[str, Unavailable] = field(default_factory=dict)
    # Each provider's model rows (context length, capabilities), by model name.
    models: dict[str, dict[str, ModelRecord]] = field(default_factory=dict)
    routing: RoutingTables = field(default_factory=RoutingTables)

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """The price of `model` now; the shipped list for a model the catalog no longer has
        (a reply that started before an admin removed it is still billed)."""
        table = self.prices.get(provider, {})
        if model in table:
            return table[model]
        return seed_price(provider, model)

    @property
    def enabled(self) -> list[str]:
        return sorted(name for name, config in self.configs.items() if config.enabled)


def build_catalog(settings: Settings, state: TableState | None) -> Catalog:
    """The catalog for `settings` and the tables in `state` (None: not read yet, the
    settings alone, as before the tables were read)."""
    records = state.providers if state is not None else {}
    configs: dict[str, ProviderConfig] = {}
    prices: dict[str, dict[str, ModelPrice | None]] = {}
    sources: dict[str, str] = {}
    disabled: dict[str, Unavailable] = {}
    for name, config in configured_providers(settings).items():
        record = records.get(name)
        if record is not None and record.source == ADMIN:
            continue  # an admin created it first; sync_environment has logged the clash
        configs[name], prices[name] = _environment_provider(config, record)
        sources[name] = ENVIRONMENT
        if record is not None and not record.is_enabled:
            disabled[name] = DISABLED_BY_ADMIN
        elif not config.enabled:
            disabled[name] = _settings_reason(config)
    key_box: ProviderKeyBox | None = None
    for name, record in records.items():
        if record.source != ADMIN:
            continue
        key_box = key_box or ProviderKeyBox.from_settings(settings)
        configs[name], prices[name] = _admin_provider(record, settings, key_box)
        sources[name] = ADMIN
        if not record.is_enabled:
            disabled[name] = DISABLED_BY_ADMIN
        elif not configs[name].enabled:
            disabled[name] = KEY_UNREADABLE  # the only other way _admin_provider disables one
    configs = apply_feature_flag(loadable(configs, settings), settings)
    for name, config in configs.items():
        if not config.enabled and name not in disabled:
            disabled[name] = ONLY_DEFAULT_PROVIDER
    return Catalog(
        configs=configs,
        prices={name: prices[name] for name in configs},
        sources={name: sources[name] for name in configs},
        stamp=state.stamp if state is not None else None,
        disabled={name: disabled[name] for name in configs if not configs[name].enabled},
        models={
            name: {m.name: m for m in records[name].models} for name in configs if name in records
        },
        routing=state.routing if state is not None else RoutingTables(),
    )


def _offered(
    listed: tuple[str, ...], records: tuple[ModelRecord, ...], provider: str
) -> tuple[tuple[str, ...], dict[str, ModelPrice | None]]:
    by_name = {m.name: m for m in records}
    names = [m for m in listed if m not in by_name or by_name[m].is_enabled]
    names += [m.name for m in records if m.is_enabled and m.name not in listed]
    # Disabled models keep their price: a reply that started before the admin disabled its
    # model is billed at the row's price, not the shipped one.
    prices = {name: seed_price(provider, name) for name in names}
    prices.update({m.name: m.price for m in records})
    return tuple(names), prices


def _default(preferred: str | None, models: tuple[str, ...]) -> str | None:
    if preferred in models:
        return preferred
    return models[0] if models else preferred


def _environment_provider(
    config: ProviderConfig, record: ProviderRecord | None
) -> tuple[ProviderConfig, dict[str, ModelPrice | None]]:
    if record is None:
        return config, {m: seed_price(config.name, m) for m in config.models}
    models, prices = _offered(config.models, record.models, config.name)
    update: dict[str, Any] = {
        "models": models,
        "default_model": _default(config.default_model, models),
        "enabled": config.enabled and record.is_enabled,
        "display_name": record.display_name,
    }
    if record.max_tokens is not None:
        update["max_tokens"] = record.max_tokens
    if record.temperature_default is not None:
        update["temperature"] = record.temperature_default
    return config.model_copy(update=update), prices


def _admin_provider(
    record: ProviderRecord, settings: Settings, key_box: ProviderKeyBox
) -> tuple[ProviderConfig, dict[str, ModelPrice | None]]:
    models, prices = _offered((), record.models, record.name)
    enabled = record.is_enabled
    api_key: SecretStr | None = None
    if record.api_key_encrypted:
        try:
            api_key = SecretStr(key_box.decrypt(record.api_key_encrypted))
        except (ProviderKeysUnavailable, InvalidKeyToken) as exc:
            # Serving it without its key would send unauthenticated requests: keep it listed,
            # refuse it, and say why (the message names the setting, never a key).
            log.error("provider %r is unusable: %s", record.name, exc)
            enabled = False
    config = ProviderConfig(
        name=record.name,
        adapter=record.adapter,
        display_name=record.display_name,
        api_key=api_key,
        api_endpoint=record.api_endpoint,
        models=models,
        default_model=_default(record.default_model, models),
        timeout=settings.PROVIDER_TIMEOUT_SECONDS,
        max_retries=settings.PROVIDER_MAX_RETRIES,
        temperature=record.temperature_default if record.temperature_default is not None else 0.7,
        max_tokens=record.max_tokens,
        enabled=enabled,
        options=tuple(sorted((record.config_json or {}).items())),
    )
    return config, prices
