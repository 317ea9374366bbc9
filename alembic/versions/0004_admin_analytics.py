"""Admin analytics: a compact time index on provider_usage.

Revision ID: 0004_admin_analytics
Revises: 0003_reliability
Create Date: 2026-12-02

* idx_provider_usage_date (a B-tree on created_at, about 35 bytes a row) becomes
  idx_provider_usage_created_brin, a BRIN index (a few bytes per thousand rows): usage rows are
  appended in time order, so block ranges summarise dates well, and date-range analytics scan
  only the matching blocks. Per-user lookups keep idx_provider_usage_user.

On SQLite the method is ignored and a plain index is built. Downgrade restores the B-tree.

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_admin_analytics"
down_revision: str | Sequence[str] | None = "0003_reliability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "idx_provider_usage_created_brin",
        "provider_usage",
        ["created_at"],
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32},
    )
    op.drop_index("idx_provider_usage_date", table_name="provider_usage")


def downgrade() -> None:
    op.create_index("idx_provider_usage_date", "provider_usage", ["created_at"])
    op.drop_index("idx_provider_usage_created_brin", table_name="provider_usage")
