"""API calls: chats of kind `api`, and the prompt a compatible-API call sent, kept on its reply.

Revision ID: 0009_api_calls
Revises: 0008_routing
Create Date: 2026-12-02

* chats.kind: `chat` (made in the chat app or the native API) or `api` (one call to
  /v1/chat/completions or /v1/messages). `GET /chats` lists `chat` chats unless asked.
* messages.prompt: the conversation exactly as a compatible-API call sent it (system prompt
  and earlier turns included). The worker sends it as it is instead of building one from the
  chat's history, which such a chat does not have.

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_api_calls"
down_revision: str | Sequence[str] | None = "0008_routing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="chat")
        )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("prompt", JSON, nullable=True))


def downgrade() -> None:
    # The old schema has no place for API calls: they go, with their messages (the usage
    # rows stay, detached, as for any deleted chat).
    op.execute("DELETE FROM chats WHERE kind = 'api'")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("prompt")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("kind")
