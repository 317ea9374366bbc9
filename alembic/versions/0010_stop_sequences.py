"""Stop sequences: messages.stop, the sequences a reply is asked to end at.

Revision ID: 0010_stop_sequences
Revises: 0009_api_calls
Create Date: 2026-12-03

Set on replies whose request gave `stop` (OpenAI's format, the native API) or
`stop_sequences` (Anthropic's); the worker passes them to the provider on every attempt, the
fallbacks' too.

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_stop_sequences"
down_revision: str | Sequence[str] | None = "0009_api_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("stop", JSON, nullable=True))


def downgrade() -> None:
    # Replies keep their text; only the request's stop sequences are forgotten.
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("stop")
