"""Reliability: usage survives chat deletion, exact costs, sweeper bookkeeping, indexes.

Revision ID: 0003_reliability
Revises: 0002_multi_provider
Create Date: 2026-12-01

* provider_usage.chat_id / message_id become ON DELETE SET NULL: usage rows are the billing
  record, and deleting a chat must not erase its spend.
* provider_usage.cost keeps 12 decimals (a price per 1k tokens has 6), so sums are exact;
  prompt_tokens_estimated / completion_tokens_estimated say which counts were estimated.
* messages.enqueued_at (when the job was last sent: the sweeper re-sends only lost jobs),
  messages.finish_reason (replayed in the done event), messages.request_fingerprint (the
  same Idempotency-Key with another body answers 409).
* Indexes for the sweeper (status, provider_name) and the idempotent replay (reply_to_id).
* At most one default system prompt per user: older extra defaults are cleared first.

Downgrade restores 0002's schema; costs are rounded back to 6 decimals.

Hand-written on purpose: do not import shared.models here.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reliability"
down_revision: str | Sequence[str] | None = "0002_multi_provider"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
OLD_MONEY = sa.Numeric(precision=10, scale=6)
EXACT_MONEY = sa.Numeric(precision=20, scale=12)
USAGE_FKS = (("chat_id", "chats"), ("message_id", "messages"))


def _recreate_usage_foreign_keys(ondelete: str) -> None:
    with op.batch_alter_table("provider_usage") as batch:
        for column, table in USAGE_FKS:
            name = f"fk_provider_usage_{column}_{table}"
            batch.drop_constraint(name, type_="foreignkey")
            batch.create_foreign_key(name, table, [column], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _recreate_usage_foreign_keys("SET NULL")
    with op.batch_alter_table("provider_usage") as batch:
        batch.alter_column("cost", type_=EXACT_MONEY, existing_type=OLD_MONEY)
        for column in ("prompt_tokens_estimated", "completion_tokens_estimated"):
            batch.add_column(
                sa.Column(column, sa.Boolean(), server_default=sa.false(), nullable=False)
            )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("enqueued_at", TZ, nullable=True))
        batch.add_column(sa.Column("finish_reason", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
    op.create_index("ix_messages_status_provider", "messages", ["status", "provider_name"])
    op.create_index("ix_messages_reply_to_id", "messages", ["reply_to_id"])

    # Keep each user's newest default prompt; the others stop being defaults.
    op.execute(
        """
        UPDATE system_prompts SET is_default = false
        WHERE is_default AND id NOT IN (
            SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (
                    PARTITION BY user_id ORDER BY created_at DESC, id DESC
                ) AS rank
                FROM system_prompts WHERE is_default
            ) AS ranked WHERE rank = 1
        )
        """
    )
    op.create_index(
        "uq_system_prompts_one_default",
        "system_prompts",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )


def downgrade() -> None:
    op.drop_index("uq_system_prompts_one_default", table_name="system_prompts")
    op.drop_index("ix_messages_reply_to_id", table_name="messages")
    op.drop_index("ix_messages_status_provider", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("request_fingerprint")
        batch.drop_column("finish_reason")
        batch.drop_column("enqueued_at")
    with op.batch_alter_table("provider_usage") as batch:
        batch.drop_column("completion_tokens_estimated")
        batch.drop_column("prompt_tokens_estimated")
        batch.alter_column("cost", type_=OLD_MONEY, existing_type=EXACT_MONEY)
    # Rows whose chat is gone would violate CASCADE's promise: they keep a NULL chat_id,
    # which 0002's schema allows.
    _recreate_usage_foreign_keys("CASCADE")
