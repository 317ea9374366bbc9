"""Routing: fallback chains, deployment pools, A/B experiments, and per-attempt usage rows.

Revision ID: 0008_routing
Revises: 0007_usage_rollup
Create Date: 2026-12-02

* fallback_chains, pool_deployments, experiments: admin-edited routing configuration, read
  with the provider catalog (docs/providers/routing.md).
* chats.routing (the chat's routing options), chats.experiment_id / experiment_arm (its A/B
  assignment, sticky for the chat's life).
* messages.routing (the route a reply was given at submit), messages.route_step (which of its
  targets runs now), messages.rating (a thumbs up or down).
* provider_usage.route_step, error, cached: a reply that falls back has one usage row per
  attempt, so the unique key becomes (message_id, route_step); existing rows are step 0, so
  they keep their one row each and the old guarantee (never billed twice) holds per attempt.

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_routing"
down_revision: str | Sequence[str] | None = "0007_usage_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "fallback_chains",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider_name", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("targets", JSON, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_fallback_chains"),
        sa.UniqueConstraint("provider_name", "model_name", name="uq_fallback_chains_target"),
    )
    op.create_table(
        "pool_deployments",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("pool_name", sa.String(length=100), nullable=False),
        sa.Column("provider_name", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("is_enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_pool_deployments"),
        sa.UniqueConstraint(
            "pool_name", "provider_name", "model_name", name="uq_pool_deployments_target"
        ),
        sa.CheckConstraint("weight > 0", name="ck_pool_deployments_positive_weight"),
    )
    op.create_index("ix_pool_deployments_pool_name", "pool_deployments", ["pool_name"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("control_provider", sa.String(length=50), nullable=False),
        sa.Column("control_model", sa.String(length=100), nullable=False),
        sa.Column("variant_provider", sa.String(length=50), nullable=False),
        sa.Column("variant_model", sa.String(length=100), nullable=False),
        sa.Column("variant_share", sa.Float(), nullable=False, server_default="0.5"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
        sa.CheckConstraint(
            "variant_share >= 0 AND variant_share <= 1", name="ck_experiments_share_range"
        ),
    )
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("routing", JSON, nullable=True))
        batch.add_column(sa.Column("experiment_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("experiment_arm", sa.String(length=10), nullable=True))
        batch.create_foreign_key(
            "fk_chats_experiment_id_experiments",
            "experiments",
            ["experiment_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("routing", JSON, nullable=True))
        batch.add_column(sa.Column("route_step", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("rating", sa.SmallInteger(), nullable=True))
    with op.batch_alter_table("provider_usage") as batch:
        batch.add_column(sa.Column("route_step", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.drop_constraint("uq_provider_usage_message", type_="unique")
        batch.create_unique_constraint(
            "uq_provider_usage_message_step", ["message_id", "route_step"]
        )


def downgrade() -> None:
    # Later attempts' rows would break the old one-row-per-reply key: the first attempt's
    # row stays (a fallback's cost is lost to the old schema, which cannot hold it).
    op.execute("DELETE FROM provider_usage WHERE route_step > 0")
    with op.batch_alter_table("provider_usage") as batch:
        batch.drop_constraint("uq_provider_usage_message_step", type_="unique")
        batch.create_unique_constraint("uq_provider_usage_message", ["message_id"])
        batch.drop_column("cached")
        batch.drop_column("error")
        batch.drop_column("route_step")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("rating")
        batch.drop_column("route_step")
        batch.drop_column("routing")
    with op.batch_alter_table("chats") as batch:
        batch.drop_constraint("fk_chats_experiment_id_experiments", type_="foreignkey")
        batch.drop_column("experiment_arm")
        batch.drop_column("experiment_id")
        batch.drop_column("routing")
    op.drop_table("experiments")
    op.drop_index("ix_pool_deployments_pool_name", table_name="pool_deployments")
    op.drop_table("pool_deployments")
    op.drop_table("fallback_chains")
