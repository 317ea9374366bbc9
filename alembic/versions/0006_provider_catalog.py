"""Provider catalog: a version every process watches, and where each model came from.

Revision ID: 0006_provider_catalog
Revises: 0005_provider_runtime_columns
Create Date: 2026-12-02

* provider_catalog: one row whose `version` goes up with every change to provider_configs or
  provider_models (admin API or the environment sync at start-up). Every API and worker process
  reloads its snapshot of the provider tables when it sees a new version; the writer takes this
  row's lock first, so concurrent writers are serialised and no change is missed.
* provider_models.source: 'environment' for models listed in the settings (the sync at each
  start adds them and drops the ones no longer listed), 'admin' for models added through the
  admin API (never touched by the sync).
* The rows 0002 seeded were never read until now: their models carry no prices and their
  `is_enabled` copied "has a key" at migration time (which the settings decide, at each
  start). The models are dropped and every provider enabled; the environment sync at the next
  start writes the models again, priced from the shipped list.

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_provider_catalog"
down_revision: str | Sequence[str] | None = "0005_provider_runtime_columns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    catalog = op.create_table(
        "provider_catalog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.CheckConstraint("id = 1", name="ck_provider_catalog_one_row"),
        sa.PrimaryKeyConstraint("id", name="pk_provider_catalog"),
    )
    op.bulk_insert(catalog, [{"id": 1, "version": 0}])
    with op.batch_alter_table("provider_models") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=20), nullable=False, server_default="environment")
        )
        batch.create_check_constraint(
            "ck_provider_models_source", "source IN ('environment', 'admin')"
        )
    op.execute(sa.table("provider_models").delete())
    configs = sa.table("provider_configs", sa.column("is_enabled", sa.Boolean))
    op.execute(configs.update().values(is_enabled=True))


def downgrade() -> None:
    with op.batch_alter_table("provider_models") as batch:
        batch.drop_constraint("ck_provider_models_source", type_="check")
        batch.drop_column("source")
    op.drop_table("provider_catalog")
