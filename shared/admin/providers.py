"""Admin providers: creating, changing and deleting rows of `provider_configs`.

Environment providers (`source = environment`) belong to the settings: an admin may only
enable or disable them and change their display name, max tokens and temperature; their
adapter, endpoint, key and default model are changed in the settings, which the next start
syncs. Admin providers (`source = admin`) are the admin's entirely. Keys are stored as Fernet
tokens (shared/providers/keys.py) and never leave this module in clear.

Every write takes the catalog lock first and bumps its version in the same transaction
(shared/providers/directory.py); the caller tells the processes after the commit. Checks that
may wait on the network (resolving an endpoint's host) run before the lock is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import SecretStr
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, selectinload

from shared.admin.provider_views import ProviderView, provider_view
from shared.admin.service import require_admin
from shared.errors import AppError, Conflict, NotFound
from shared.models import Message, ProviderConfigRow, ProviderModel, ReplyStatus, User
from shared.pricing import seed_price
from shared.providers.catalog import configured_providers
from shared.providers.directory import bump_version, lock_catalog
from shared.providers.endpoints import UnsafeEndpoint, check_endpoint_url
from shared.providers.keys import ProviderKeyBox, ProviderKeysUnavailable
from shared.providers.manager import provider_manager
from shared.providers.snapshot import ADMIN, ENVIRONMENT
from shared.settings import Settings

# provider_configs.api_endpoint is a String(255).
ENDPOINT_MAX_LENGTH = 255


class InvalidProviderChange(AppError):
    status_code = 422


def reject_unknown_fields(changes: Mapping[str, Any], allowed: frozenset[str] | set[str]) -> None:
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidProviderChange(f"Unknown fields: {', '.join(sorted(unknown))}")


# -- checks shared with the model routes ----------------------------------------------------


def load_provider(session: Session, name: str) -> ProviderConfigRow:
    """The row and its models as the database has them now (read again if already loaded)."""
    row = session.scalars(
        select(ProviderConfigRow)
        .where(ProviderConfigRow.provider_name == name)
        .options(selectinload(ProviderConfigRow.models))
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise NotFound(f"Unknown provider '{name}'")
    return row


def check_price(model: str, input_cost: Decimal | None, output_cost: Decimal | None) -> None:
    # The catalog bills a model only with both halves of a price: refuse half a price
    # rather than silently leave the model unpriced.
    if (input_cost is None) != (output_cost is None):
        raise InvalidProviderChange(
            f"Model '{model}': set both input_cost_per_1k_tokens and output_cost_per_1k_tokens, "
            "or neither (unpriced)"
        )


# -- provider writes ------------------------------------------------------------------------

ADMIN_FIELDS = frozenset(
    {
        "adapter",
        "api_endpoint",
        "api_key",
        "is_enabled",
        "default_model",
        "max_tokens",
        "temperature_default",
        "config_json",
        "display_name",
    }
)
# What an admin may change on an environment provider; the rest is the settings'.
ENVIRONMENT_FIELDS = frozenset({"is_enabled", "display_name", "max_tokens", "temperature_default"})


@dataclass(frozen=True, slots=True)
class NewModel:
    model_name: str
    is_enabled: bool = True
    display_name: str | None = None
    max_context_length: int | None = None
    capabilities: dict[str, Any] | None = None
    # None with `priced` False: the shipped price (model_row); with `priced` True: as given.
    input_cost_per_1k_tokens: Decimal | None = None
    output_cost_per_1k_tokens: Decimal | None = None
    priced: bool = False


@dataclass(frozen=True, slots=True)
class NewProvider:
    provider_name: str
    adapter: str
    api_endpoint: str | None = None
    api_key: SecretStr | None = None
    is_enabled: bool = True
    default_model: str | None = None
    max_tokens: int | None = None
    temperature_default: float | None = None
    config_json: dict[str, Any] | None = None
    display_name: str | None = None
    models: tuple[NewModel, ...] = ()


def check_adapter(adapter: str) -> str:
    installed = provider_manager.list_providers()
    if adapter not in installed:
        raise InvalidProviderChange(
            f"Unknown adapter '{adapter}'. Installed adapters: {', '.join(installed) or 'none'}"
        )
    return adapter


def check_endpoint(url: str, settings: Settings) -> str:
    """The normalised URL, or 422 with the SSRF policy's reason (resolves the host name)."""
    try:
        normalised = check_endpoint_url(
            url, allow_private=settings.PROVIDER_ENDPOINTS_ALLOW_PRIVATE, resolve_names=True
        )
    except UnsafeEndpoint as exc:
        raise InvalidProviderChange(f"api_endpoint refused: {exc.reason}") from None
    if len(normalised) > ENDPOINT_MAX_LENGTH:
        raise InvalidProviderChange(f"api_endpoint is longer than {ENDPOINT_MAX_LENGTH} characters")
    return normalised


def encrypt_key(key: SecretStr, settings: Settings) -> str:
    try:
        return ProviderKeyBox.from_settings(settings).encrypt(key.get_secret_value())
    except ProviderKeysUnavailable as exc:
        raise InvalidProviderChange(f"api_key not stored: {exc}") from None


# Adapters whose endpoint has no sensible default: the OpenAI SDK would fall back to
# api.openai.com and send a compatible server's key there.
ENDPOINT_REQUIRED = frozenset({"openai_compatible"})


def _check_endpoint_given(adapter: str, endpoint: str | None) -> None:
    if endpoint is None and adapter in ENDPOINT_REQUIRED:
        raise InvalidProviderChange(f"The {adapter} adapter needs an api_endpoint")


def _check_default(default: str | None, models: list[ProviderModel], provider: str) -> None:
    if default is None:
        return
    enabled = [m.model_name for m in models if m.is_enabled]
    if default not in enabled:
        raise InvalidProviderChange(
            f"default_model '{default}' is not an enabled model of '{provider}'. "
            f"Enabled models: {', '.join(enabled) or 'none (add one first)'}"
        )


def _settings_for(row: ProviderConfigRow, field: str) -> str:
    """Where the settings keep this environment provider's `field`, for the refusal."""
    name = row.provider_name
    builtin = {
        "ollama": {"api_endpoint": "OLLAMA_API_URL", "default_model": "DEFAULT_OLLAMA_MODEL"},
        "openai": {
            "api_endpoint": "OPENAI_API_BASE",
            "api_key": "OPENAI_API_KEY",
            "default_model": "DEFAULT_OPENAI_MODEL",
        },
        "anthropic": {
            "api_endpoint": "ANTHROPIC_BASE_URL",
            "api_key": "ANTHROPIC_API_KEY",
            "default_model": "DEFAULT_ANTHROPIC_MODEL",
        },
        "echo": {"default_model": "ECHO_MODELS (its first model is the default)"},
    }
    if name in builtin:
        setting = builtin[name].get(field)
        return f"change {setting} instead" if setting else f"'{name}' has no {field} to set"
    entry = {"api_endpoint": "base_url", "api_key": "api_key", "default_model": "default_model"}
    if row.adapter == "openai_compatible" and field in entry:
        return f"change {entry[field]} of its entry in OPENAI_COMPATIBLE_PROVIDERS instead"
    return "change the settings instead"


def _refuse_environment_fields(row: ProviderConfigRow, fields: set[str]) -> None:
    owned = sorted(fields - ENVIRONMENT_FIELDS)
    if not owned:
        return
    field = owned[0]
    if field == "adapter":
        hint = "create an admin provider under another name to use another adapter"
    elif field == "config_json":
        hint = "an environment provider's options come from the settings"
    else:
        hint = _settings_for(row, field)
    raise InvalidProviderChange(
        f"'{row.provider_name}' is an environment provider: its {field} comes from the "
        f"settings ({hint}). An admin may change: {', '.join(sorted(ENVIRONMENT_FIELDS))}"
    )


def _active_replies(session: Session, name: str) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Message.provider_name == name,
                    Message.status.in_([ReplyStatus.queued.value, ReplyStatus.running.value]),
                )
            )
        )
    )


class ProviderAdminService:
    def list_providers(
        self, session: Session, admin: User, settings: Settings
    ) -> list[ProviderView]:
        require_admin(admin)
        rows = session.scalars(
            select(ProviderConfigRow)
            .options(selectinload(ProviderConfigRow.models))
            .order_by(ProviderConfigRow.provider_name)
        )
        return [provider_view(row, settings) for row in rows]

    def get_provider(
        self, session: Session, admin: User, settings: Settings, name: str
    ) -> ProviderView:
        require_admin(admin)
        return provider_view(load_provider(session, name), settings)

    def create_provider(
        self, session: Session, admin: User, settings: Settings, new: NewProvider
    ) -> ProviderView:
        require_admin(admin)
        check_adapter(new.adapter)
        _check_endpoint_given(new.adapter, new.api_endpoint)
        endpoint = check_endpoint(new.api_endpoint, settings) if new.api_endpoint else None
        token = encrypt_key(new.api_key, settings) if new.api_key is not None else None
        names = [m.model_name for m in new.models]
        if len(set(names)) != len(names):
            raise InvalidProviderChange("models lists a model name twice")
        models = [model_row(m, new.adapter, new.provider_name) for m in new.models]
        catalog = lock_catalog(session)
        name = new.provider_name
        taken = session.scalar(
            select(exists().where(ProviderConfigRow.provider_name == name))
        ) or name in configured_providers(settings)
        if taken:
            raise Conflict(f"A provider named '{name}' already exists")
        row = ProviderConfigRow(
            provider_name=name,
            adapter=new.adapter,
            source=ADMIN,
            display_name=new.display_name,
            api_endpoint=endpoint,
            api_key_encrypted=token,
            is_enabled=new.is_enabled,
            max_tokens=new.max_tokens,
            temperature_default=new.temperature_default,
            config_json=new.config_json,
        )
        row.models.extend(models)
        default = new.default_model
        if default is None:
            default = next((m.model_name for m in new.models if m.is_enabled), None)
        _check_default(default, row.models, name)
        row.default_model = default
        session.add(row)
        session.flush()
        bump_version(session, catalog)
        return provider_view(row, settings)

    def update_provider(
        self,
        session: Session,
        admin: User,
        settings: Settings,
        name: str,
        changes: Mapping[str, Any],
    ) -> ProviderView:
        """Apply `changes` (the fields the request set; None clears a field)."""
        require_admin(admin)
        reject_unknown_fields(changes, ADMIN_FIELDS)
        values = dict(changes)
        for field in ("adapter", "is_enabled"):
            if field in values and values[field] is None:
                raise InvalidProviderChange(f"{field} cannot be null")
        # Checked before the lock, so no other writer waits on DNS while a host resolves.
        row = load_provider(session, name)
        if row.source == ENVIRONMENT:
            _refuse_environment_fields(row, set(values))
        if "adapter" in values:
            check_adapter(values["adapter"])
        if values.get("api_endpoint") is not None:
            values["api_endpoint"] = check_endpoint(values["api_endpoint"], settings)
        catalog = lock_catalog(session)
        # Read again under the lock: another admin may have changed it (or its models) since.
        row = load_provider(session, name)
        if row.source == ENVIRONMENT:
            _refuse_environment_fields(row, set(values))
        if "api_key" in values:
            key = values.pop("api_key")
            row.api_key_encrypted = encrypt_key(key, settings) if key is not None else None
        if "default_model" in values:
            _check_default(values["default_model"], row.models, name)
        _check_endpoint_given(
            values.get("adapter", row.adapter), values.get("api_endpoint", row.api_endpoint)
        )
        for field, value in values.items():
            setattr(row, field, value)
        session.flush()
        bump_version(session, catalog)
        return provider_view(row, settings)

    def delete_provider(self, session: Session, admin: User, name: str) -> None:
        require_admin(admin)
        catalog = lock_catalog(session)
        row = load_provider(session, name)
        if row.source == ENVIRONMENT:
            raise Conflict(
                f"'{name}' is an environment provider: disable it (PATCH is_enabled false), or "
                "remove it from the settings (the next start drops it)"
            )
        if row.is_enabled and _active_replies(session, name):
            raise Conflict(
                f"'{name}' has queued or running replies: disable it first (PATCH is_enabled "
                "false; new submissions are then refused while those replies finish)"
            )
        session.delete(row)
        session.flush()
        bump_version(session, catalog)


def model_row(new: NewModel, adapter: str, provider: str) -> ProviderModel:
    """The row of a model an admin adds, priced as given or from the shipped list."""
    if new.priced:
        input_cost, output_cost = new.input_cost_per_1k_tokens, new.output_cost_per_1k_tokens
    else:
        price = seed_price(provider, new.model_name, adapter)
        input_cost, output_cost = (
            (price.input_per_1k, price.output_per_1k) if price else (None, None)
        )
    check_price(new.model_name, input_cost, output_cost)
    return ProviderModel(
        model_name=new.model_name,
        source=ADMIN,
        is_enabled=new.is_enabled,
        display_name=new.display_name,
        max_context_length=new.max_context_length,
        capabilities=new.capabilities,
        input_cost_per_1k_tokens=input_cost,
        output_cost_per_1k_tokens=output_cost,
    )


provider_admin = ProviderAdminService()
