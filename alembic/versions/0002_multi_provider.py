"""Multi-provider: provider tables, API keys, chat provider/model, reply generation state.

Revision ID: 0002_multi_provider
Revises: 0001_baseline
Create Date: 2024-11-24

The plan's Phase 1 (provider_configs, provider_models, provider_usage, chats.provider_name
and chats.model_name) plus what the queue-backed service needs: personal API keys and the
generation state of assistant replies on `messages`.

Data steps (the plan's Phase 8 "Database Migration"):
* existing chats get provider_name 'ollama' and model_name DEFAULT_OLLAMA_MODEL;
* existing assistant messages get status 'completed', provider 'ollama' and that model
  (completed_at = created_at: the old service stored a reply only once it was finished);
* provider_configs gets one row each for ollama, anthropic and openai from settings, and
  provider_models one row per model of OLLAMA_MODELS / ANTHROPIC_MODELS / OPENAI_MODELS.
  API keys are never written to the database; is_enabled records whether the provider was
  usable when the migration ran (ollama always, the others only with an API key, all of them
  subject to PROVIDERS_ENABLED when that is set).

Downgrade drops exactly what upgrade added and keeps every user, chat and message row (the
plan's rollback promise); see docs/migrations.md for what is lost.

Hand-written on purpose: do not import shared.models here.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_multi_provider"
down_revision: str | Sequence[str] | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL, JSON elsewhere (as shared.models.base.JSONType).
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MONEY = sa.Numeric(precision=10, scale=6)
TZ = sa.DateTime(timezone=True)


def _now_column(name: str) -> sa.Column:
    return sa.Column(name, TZ, server_default=sa.func.now(), nullable=False)


# Lightweight table stand-ins for the data steps (never the ORM models).
_chats = sa.table(
    "chats",
    sa.column("provider_name", sa.String),
    sa.column("model_name", sa.String),
)
_messages = sa.table(
    "messages",
    sa.column("role", sa.String),
    sa.column("status", sa.String),
    sa.column("provider_name", sa.String),
    sa.column("model_name", sa.String),
    sa.column("created_at", TZ),
    sa.column("completed_at", TZ),
)
_provider_configs = sa.table(
    "provider_configs",
    sa.column("id", sa.Integer),
    sa.column("provider_name", sa.String),
    sa.column("is_enabled", sa.Boolean),
    sa.column("api_endpoint", sa.String),
    sa.column("default_model", sa.String),
    sa.column("temperature_default", sa.Float),
)
_provider_models = sa.table(
    "provider_models",
    sa.column("provider_id", sa.Integer),
    sa.column("model_name", sa.String),
    sa.column("is_enabled", sa.Boolean),
)


def upgrade() -> None:
    _create_provider_tables()
    _create_api_keys()
    _extend_chats()
    _extend_messages()
    _create_provider_usage()
    _backfill_and_seed()


def downgrade() -> None:
    op.drop_index("idx_provider_usage_date", table_name="provider_usage")
    op.drop_index("idx_provider_usage_user", table_name="provider_usage")
    op.drop_table("provider_usage")

    op.drop_index("ix_messages_chat_created", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("uq_messages_chat_idempotency", type_="unique")
        batch.drop_constraint("fk_messages_reply_to_id_messages", type_="foreignkey")
        for column in (
            "completed_at",
            "started_at",
            "lease_expires_at",
            "attempts",
            "idempotency_key",
            "max_tokens",
            "temperature",
            "reply_to_id",
            "error",
            "model_name",
            "provider_name",
            "status",
        ):
            batch.drop_column(column)

    op.drop_index("ix_chats_user_created", table_name="chats")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("model_name")
        batch.drop_column("provider_name")

    op.drop_index("ix_api_keys_user_id", table_name="api_keys")
    op.drop_table("api_keys")

    op.drop_index("idx_provider_models_provider", table_name="provider_models")
    op.drop_table("provider_models")
    op.drop_index("idx_provider_configs_name", table_name="provider_configs")
    op.drop_table("provider_configs")


def _create_provider_tables() -> None:
    op.create_table(
        "provider_configs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_name", sa.String(length=50), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("api_endpoint", sa.String(length=255), nullable=True),
        sa.Column("default_model", sa.String(length=100), nullable=True),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("temperature_default", sa.Float(), server_default="0.7", nullable=True),
        sa.Column("config_json", JSON_TYPE, nullable=True),
        _now_column("created_at"),
        _now_column("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_provider_configs"),
        sa.UniqueConstraint("provider_name", name="uq_provider_configs_provider_name"),
    )
    op.create_index("idx_provider_configs_name", "provider_configs", ["provider_name"])

    op.create_table(
        "provider_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("is_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("max_context_length", sa.Integer(), nullable=True),
        sa.Column("capabilities", JSON_TYPE, nullable=True),
        sa.Column("cost_per_1k_tokens", MONEY, nullable=True),
        sa.Column("input_cost_per_1k_tokens", MONEY, nullable=True),
        sa.Column("output_cost_per_1k_tokens", MONEY, nullable=True),
        _now_column("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_provider_models"),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider_configs.id"],
            name="fk_provider_models_provider_id_provider_configs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "provider_id", "model_name", name="uq_provider_models_provider_model"
        ),
    )
    op.create_index("idx_provider_models_provider", "provider_models", ["provider_id"])


def _create_api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])


def _extend_chats() -> None:
    # Plain ADD COLUMNs: no table rebuild on SQLite. The server default fills existing rows.
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("provider_name", sa.String(length=50), server_default="ollama", nullable=True)
        )
        batch.add_column(sa.Column("model_name", sa.String(length=100), nullable=True))
    op.create_index("ix_chats_user_created", "chats", ["user_id", "created_at"])


def _extend_messages() -> None:
    # The new foreign key and unique constraint make SQLite rebuild the table (batch mode);
    # env.py turns SQLite foreign keys off meanwhile so the rebuild cascades nothing.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("provider_name", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("model_name", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_to_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("temperature", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("lease_expires_at", TZ, nullable=True))
        batch.add_column(sa.Column("started_at", TZ, nullable=True))
        batch.add_column(sa.Column("completed_at", TZ, nullable=True))
        batch.create_foreign_key(
            "fk_messages_reply_to_id_messages",
            "messages",
            ["reply_to_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_unique_constraint(
            "uq_messages_chat_idempotency", ["chat_id", "idempotency_key"]
        )
    op.create_index("ix_messages_chat_created", "messages", ["chat_id", "created_at"])


def _create_provider_usage() -> None:
    op.create_table(
        "provider_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("provider_name", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("chat_id", sa.Uuid(), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("tokens_used", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("usage_estimated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cost", MONEY, nullable=True),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("time_to_first_token_ms", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        _now_column("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_provider_usage"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_provider_usage_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_provider_usage_chat_id_chats", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_provider_usage_message_id_messages",
            ondelete="CASCADE",
        ),
        # One usage row per reply, so a redelivered job can never bill twice.
        sa.UniqueConstraint("message_id", name="uq_provider_usage_message"),
    )
    op.create_index("idx_provider_usage_user", "provider_usage", ["user_id"])
    op.create_index("idx_provider_usage_date", "provider_usage", ["created_at"])


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _seed_rows(settings) -> list[dict]:  # type: ignore[no-untyped-def]
    allowed = set(settings.PROVIDERS_ENABLED)

    def enabled(name: str, usable: bool) -> bool:
        return usable and (not allowed or name in allowed)

    return [
        {
            "provider_name": "ollama",
            "is_enabled": enabled("ollama", True),
            "api_endpoint": settings.OLLAMA_API_URL,
            "default_model": settings.DEFAULT_OLLAMA_MODEL,
            "models": _unique(settings.OLLAMA_MODELS),
        },
        {
            "provider_name": "anthropic",
            "is_enabled": enabled("anthropic", settings.ANTHROPIC_API_KEY is not None),
            "api_endpoint": settings.ANTHROPIC_BASE_URL,
            "default_model": settings.DEFAULT_ANTHROPIC_MODEL,
            "models": _unique(settings.ANTHROPIC_MODELS),
        },
        {
            "provider_name": "openai",
            "is_enabled": enabled("openai", settings.OPENAI_API_KEY is not None),
            "api_endpoint": settings.OPENAI_API_BASE,
            "default_model": settings.DEFAULT_OPENAI_MODEL,
            "models": _unique(settings.OPENAI_MODELS),
        },
    ]


def _backfill_and_seed() -> None:
    from shared.settings import get_settings

    settings = get_settings()
    default_model = settings.DEFAULT_OLLAMA_MODEL

    # Every chat of the Ollama-only service talked to the one Ollama model.
    op.execute(
        _chats.update().where(_chats.c.provider_name.is_(None)).values(provider_name="ollama")
    )
    op.execute(_chats.update().where(_chats.c.model_name.is_(None)).values(model_name=default_model))
    # Its assistant messages are finished replies from that model.
    op.execute(
        _messages.update()
        .where(_messages.c.role == "assistant", _messages.c.status.is_(None))
        .values(
            status="completed",
            provider_name="ollama",
            model_name=default_model,
            completed_at=_messages.c.created_at,
        )
    )

    for row in _seed_rows(settings):
        op.execute(
            _provider_configs.insert().values(
                provider_name=row["provider_name"],
                is_enabled=row["is_enabled"],
                api_endpoint=row["api_endpoint"],
                default_model=row["default_model"],
                temperature_default=0.7,
            )
        )
        # INSERT ... SELECT by provider name: works online and in --sql (offline) mode.
        for model in row["models"]:
            provider_id = (
                sa.select(
                    _provider_configs.c.id,
                    sa.literal(model, sa.String),
                    sa.true(),
                )
                .where(_provider_configs.c.provider_name == row["provider_name"])
            )
            op.execute(
                _provider_models.insert().from_select(
                    ["provider_id", "model_name", "is_enabled"], provider_id
                )
            )
