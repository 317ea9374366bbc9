"""Routing configuration, edited by admins (docs/providers/routing.md).

Part of the provider catalog: writers lock and bump `provider_catalog` as provider writes do,
and every process reloads these rows with the provider tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, JSONType, Timestamps


class FallbackChain(Timestamps, Base):
    """What a reply for (provider, model) tries next when that target fails."""

    __tablename__ = "fallback_chains"
    __table_args__ = (
        UniqueConstraint("provider_name", "model_name", name="uq_fallback_chains_target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_name: Mapped[str] = mapped_column(String(50))
    model_name: Mapped[str] = mapped_column(String(100))
    # [{"provider": ..., "model": ...}, ...], tried in order.
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)


class PoolDeployment(Timestamps, Base):
    """One deployment (a provider: its key, base URL, region) of a logical model, which
    clients address as `pool:<pool_name>`."""

    __tablename__ = "pool_deployments"
    __table_args__ = (
        UniqueConstraint(
            "pool_name", "provider_name", "model_name", name="uq_pool_deployments_target"
        ),
        CheckConstraint("weight > 0", name="positive_weight"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_name: Mapped[str] = mapped_column(String(100), index=True)
    provider_name: Mapped[str] = mapped_column(String(50))
    model_name: Mapped[str] = mapped_column(String(100))
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Experiment(Timestamps, Base):
    """An A/B split: a share of new chats bound for the control go to the variant."""

    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint("variant_share >= 0 AND variant_share <= 1", name="share_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    control_provider: Mapped[str] = mapped_column(String(50))
    control_model: Mapped[str] = mapped_column(String(100))
    variant_provider: Mapped[str] = mapped_column(String(50))
    variant_model: Mapped[str] = mapped_column(String(100))
    variant_share: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
