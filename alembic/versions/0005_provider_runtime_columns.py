"""Provider runtime columns: what provider_configs needs to become the runtime truth.

Revision ID: 0005_provider_runtime_columns
Revises: 0004_admin_analytics
Create Date: 2026-12-02

provider_configs gains:

* adapter: which provider class serves the row. Rows seeded by 0002 are named after their
  adapter (ollama, anthropic, openai; echo too, a built-in plugin); any other existing row can
  only be an OpenAI-compatible server, the one kind of provider configured by a free name.
* source: 'environment' (refreshed from the settings at each start) or 'admin' (created
  through the admin API). Every existing row came from the environment.
* display_name: a label for clients.
* api_key_encrypted: a Fernet token (shared/providers/keys.py), never the key itself.

Downgrade drops them (an encrypted key is lost with its column: the environment still holds
the keys of environment providers).

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_provider_runtime_columns"
down_revision: str | Sequence[str] | None = "0004_admin_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Providers whose name is their adapter's; anything else was an OpenAI-compatible server.
NAMED_ADAPTERS = ("ollama", "anthropic", "openai", "echo")


def upgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch:
        batch.add_column(sa.Column("adapter", sa.String(length=50), nullable=True))
        batch.add_column(
            sa.Column("source", sa.String(length=20), nullable=False, server_default="environment")
        )
        batch.add_column(sa.Column("display_name", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("api_key_encrypted", sa.Text(), nullable=True))
    configs = sa.table(
        "provider_configs", sa.column("provider_name", sa.String), sa.column("adapter", sa.String)
    )
    op.execute(
        configs.update().values(
            adapter=sa.case(
                (configs.c.provider_name.in_(NAMED_ADAPTERS), configs.c.provider_name),
                else_="openai_compatible",
            )
        )
    )
    with op.batch_alter_table("provider_configs") as batch:
        # Not null once filled: every provider must say which class serves it.
        batch.alter_column("adapter", existing_type=sa.String(length=50), nullable=False)
        batch.create_check_constraint(
            "ck_provider_configs_source", "source IN ('environment', 'admin')"
        )


def downgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch:
        batch.drop_constraint("ck_provider_configs_source", type_="check")
        batch.drop_column("api_key_encrypted")
        batch.drop_column("display_name")
        batch.drop_column("source")
        batch.drop_column("adapter")
