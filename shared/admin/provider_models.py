"""Admin provider models: adding, repricing, enabling and removing rows of `provider_models`.

An environment provider's own models (`source = environment`) are listed in the settings: an
admin may disable or reprice them, not delete them (the next start would add them back).
Models an admin adds (`source = admin`, on any provider) are theirs entirely. Writes take the
catalog lock and bump its version, as every provider write does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from shared.admin.provider_views import ModelView, model_view
from shared.admin.providers import (
    InvalidProviderChange,
    NewModel,
    check_price,
    load_provider,
    model_row,
    reject_unknown_fields,
)
from shared.admin.service import require_admin
from shared.errors import Conflict, NotFound
from shared.models import ProviderConfigRow, ProviderModel, User
from shared.providers.directory import bump_version, lock_catalog
from shared.providers.snapshot import ADMIN, ENVIRONMENT

MODEL_FIELDS = frozenset(
    {
        "is_enabled",
        "display_name",
        "max_context_length",
        "capabilities",
        "input_cost_per_1k_tokens",
        "output_cost_per_1k_tokens",
    }
)


def _find(row: ProviderConfigRow, model: str) -> ProviderModel:
    for candidate in row.models:
        if candidate.model_name == model:
            return candidate
    raise NotFound(f"Provider '{row.provider_name}' has no model '{model}'")


def _is_default(row: ProviderConfigRow, model: str) -> bool:
    # An environment provider's default model is the settings' (the catalog falls back to
    # its first offered model when that one is disabled); only an admin's is guarded.
    return row.source == ADMIN and row.default_model == model


class ProviderModelAdminService:
    def list_models(self, session: Session, admin: User, provider: str) -> list[ModelView]:
        require_admin(admin)
        return [model_view(m) for m in load_provider(session, provider).models]

    def add_model(self, session: Session, admin: User, provider: str, new: NewModel) -> ModelView:
        require_admin(admin)
        catalog = lock_catalog(session)
        row = load_provider(session, provider)
        if any(m.model_name == new.model_name for m in row.models):
            raise Conflict(f"Provider '{provider}' already has a model '{new.model_name}'")
        model = model_row(new, row.adapter, provider)
        row.models.append(model)
        if row.source == ADMIN and row.default_model is None and new.is_enabled:
            row.default_model = new.model_name
        session.flush()
        bump_version(session, catalog)
        return model_view(model)

    def update_model(
        self,
        session: Session,
        admin: User,
        provider: str,
        model_name: str,
        changes: Mapping[str, Any],
    ) -> ModelView:
        """Apply `changes` (the fields the request set; None clears a field)."""
        require_admin(admin)
        reject_unknown_fields(changes, MODEL_FIELDS)
        catalog = lock_catalog(session)
        row = load_provider(session, provider)
        model = _find(row, model_name)
        if "is_enabled" in changes:
            if changes["is_enabled"] is None:
                raise InvalidProviderChange("is_enabled cannot be null")
            if not changes["is_enabled"] and _is_default(row, model_name):
                raise Conflict(
                    f"'{model_name}' is the default model of '{provider}': change default_model "
                    f"first (PATCH /admin/providers/{provider})"
                )
        for field, value in changes.items():
            setattr(model, field, value)
        check_price(model_name, model.input_cost_per_1k_tokens, model.output_cost_per_1k_tokens)
        session.flush()
        bump_version(session, catalog)
        return model_view(model)

    def delete_model(self, session: Session, admin: User, provider: str, model_name: str) -> None:
        require_admin(admin)
        catalog = lock_catalog(session)
        row = load_provider(session, provider)
        model = _find(row, model_name)
        if model.source == ENVIRONMENT:
            raise Conflict(
                f"'{model_name}' is listed in the settings for '{provider}': disable it "
                "(PATCH is_enabled false) instead; deleted, it would come back at the next start"
            )
        if _is_default(row, model_name):
            raise Conflict(
                f"'{model_name}' is the default model of '{provider}': change default_model "
                f"first (PATCH /admin/providers/{provider})"
            )
        row.models.remove(model)
        session.flush()
        bump_version(session, catalog)


provider_model_admin = ProviderModelAdminService()
