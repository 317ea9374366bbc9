from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, JSONType, Timestamps, utcnow

Money = Numeric(10, 6)
# Per-reply costs keep every digit a price per 1k tokens (6 decimals) can produce, so a
# day's sum equals the sum of its exact costs.
ExactMoney = Numeric(20, 12)


# Providers named after their adapter; any other name configured without an adapter can only
# be an OpenAI-compatible server (the rule migration 0005 backfilled existing rows with).
NAMED_ADAPTERS = ("ollama", "anthropic", "openai", "echo")


def _adapter_for_name(context: Any) -> str:
    name = context.get_current_parameters().get("provider_name")
    return name if name in NAMED_ADAPTERS else "openai_compatible"


class ProviderConfigRow(Timestamps, Base):
    """The plan's `provider_configs` (`ProviderConfig` is taken by the adapter config)."""

    __tablename__ = "provider_configs"
    __table_args__ = (
        Index("idx_provider_configs_name", "provider_name"),
        CheckConstraint("source IN ('environment', 'admin')", name="ck_provider_configs_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_name: Mapped[str] = mapped_column(String(50), unique=True)
    # The provider class serving this row: openai_compatible, ollama, anthropic, openai or an
    # installed plugin's entry-point name.
    adapter: Mapped[str] = mapped_column(String(50), default=_adapter_for_name)
    # environment: refreshed from the settings at each start (its key stays in the env);
    # admin: created through the admin API, fully editable.
    source: Mapped[str] = mapped_column(
        String(20), default="environment", server_default="environment"
    )
    display_name: Mapped[str | None] = mapped_column(String(100))
    # A Fernet token from shared.providers.keys.ProviderKeyBox, never the key in clear.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    api_endpoint: Mapped[str | None] = mapped_column(String(255))
    default_model: Mapped[str | None] = mapped_column(String(100))
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    temperature_default: Mapped[float | None] = mapped_column(
        Float, default=0.7, server_default="0.7"
    )
    config_json: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    models: Mapped[list[ProviderModel]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ProviderModel.id"
    )


class ProviderCatalog(Base):
    """One row: `version` goes up with every change to the provider tables.

    Writers lock this row first (serialising them) and bump it in the same transaction; every
    process reloads its provider snapshot when it sees a new version.
    """

    __tablename__ = "provider_catalog"
    __table_args__ = (CheckConstraint("id = 1", name="ck_provider_catalog_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now(), onupdate=utcnow
    )


class ProviderModel(Base):
    __tablename__ = "provider_models"
    __table_args__ = (
        UniqueConstraint("provider_id", "model_name", name="uq_provider_models_provider_model"),
        Index("idx_provider_models_provider", "provider_id"),
        CheckConstraint("source IN ('environment', 'admin')", name="ck_provider_models_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("provider_configs.id", ondelete="CASCADE")
    )
    model_name: Mapped[str] = mapped_column(String(100))
    # environment: listed in the settings, added and dropped by the sync at each start;
    # admin: added through the admin API, never touched by the sync.
    source: Mapped[str] = mapped_column(
        String(20), default="environment", server_default="environment"
    )
    display_name: Mapped[str | None] = mapped_column(String(100))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    max_context_length: Mapped[int | None] = mapped_column(Integer)
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cost_per_1k_tokens: Mapped[Decimal | None] = mapped_column(Money)
    input_cost_per_1k_tokens: Mapped[Decimal | None] = mapped_column(Money)
    output_cost_per_1k_tokens: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )


class ProviderUsage(Base):
    """One row per finished generation: what it cost, in tokens, money and time."""

    __tablename__ = "provider_usage"
    __table_args__ = (
        Index("idx_provider_usage_user", "user_id"),
        # BRIN, not a B-tree: rows are appended in time order, so a block range summary finds a
        # date range at a tiny fraction of a B-tree's size (35 bytes a row at 1M rows, measured
        # in docs/benchmarks.md). SQLite ignores the method and builds a plain index.
        Index(
            "idx_provider_usage_created_brin",
            "created_at",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": 32},
        ),
        # One usage row per attempt of a reply (a fallback is a new attempt), so a
        # redelivered job can never bill an attempt twice.
        UniqueConstraint("message_id", "route_step", name="uq_provider_usage_message_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE")
    )
    provider_name: Mapped[str] = mapped_column(String(50))
    model_name: Mapped[str] = mapped_column(String(100))
    # SET NULL: usage rows are the billing record and outlive the chat they came from.
    chat_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("chats.id", ondelete="SET NULL")
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="SET NULL")
    )
    tokens_used: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Which counts we estimated because the provider did not report them.
    prompt_tokens_estimated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    completion_tokens_estimated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    cost: Mapped[Decimal | None] = mapped_column(ExactMoney)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    time_to_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(20))
    # Which target of the reply's route this attempt ran (0: the first), and why it failed.
    route_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    # Served from the response cache: no provider call, zero tokens and cost.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
