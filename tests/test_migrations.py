"""Alembic revisions on real PostgreSQL and on SQLite: empty upgrade/downgrade, head == models,
and the plan's rollback promise (data written at the baseline survives upgrade, backfill and
downgrade).

Each PostgreSQL test gets its own uniquely named database on the server of TEST_DATABASE_URL
(see conftest.py), dropped afterwards; each SQLite test a file in tmp_path.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import alembic.command as command
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

from shared.db import make_engine
from shared.models import Base
from shared.settings import get_settings
from tests.conftest import TEST_DATABASE_URL

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "0001_baseline"
HEAD = "0010_stop_sequences"
LEGACY_MODEL = "llama-legacy:7b-q4"

BASELINE_TABLES = {"users", "system_prompts", "chats", "messages"}
ADDED_TABLES = {
    "provider_configs",
    "provider_models",
    "provider_usage",
    "api_keys",
    "provider_catalog",
    "usage_rollup_hourly",
    "usage_rollup_daily",
    "usage_rollup_state",
    "fallback_chains",
    "pool_deployments",
    "experiments",
}
ADDED_CHAT_COLUMNS = {
    "provider_name",
    "model_name",
    "routing",
    "experiment_id",
    "experiment_arm",
    "kind",
}
ADDED_MESSAGE_COLUMNS = {
    "status",
    "provider_name",
    "model_name",
    "error",
    "reply_to_id",
    "temperature",
    "max_tokens",
    "idempotency_key",
    "attempts",
    "lease_expires_at",
    "started_at",
    "completed_at",
    "enqueued_at",
    "finish_reason",
    "request_fingerprint",
    "routing",
    "route_step",
    "rating",
    "prompt",
    "stop",
}


# ------------------------------------------------------------------------------------ fixtures


def _admin_connection() -> Any:
    import psycopg2

    server = make_url(TEST_DATABASE_URL)
    conn = psycopg2.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username or "postgres",
        password=server.password,
        dbname="postgres",
    )
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return conn


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"switchboard_migrations_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'migrations.db'}"


@pytest.fixture
def legacy_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings as an upgraded Ollama deployment might have them; caches cleared around."""
    monkeypatch.setenv("DEFAULT_OLLAMA_MODEL", LEGACY_MODEL)
    monkeypatch.setenv("OLLAMA_MODELS", f"{LEGACY_MODEL}, mistral:7b,{LEGACY_MODEL}")
    monkeypatch.setenv("OLLAMA_API_URL", "http://gpu-box:11434")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-never-stored")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("PROVIDERS_ENABLED", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    # make_engine: on SQLite this turns foreign keys ON, as the running service has them.
    eng = make_engine(db_url, pool_size=1, max_overflow=1)
    yield eng
    eng.dispose()


def alembic_config(url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["sqlalchemy.url"] = url
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_diff(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, Base.metadata)


def diff_name(diff: Any) -> str:
    """'table', 'table.column' or the index/constraint name of one compare_metadata entry."""
    assert isinstance(diff, tuple), diff  # lists hold column modifications: none expected here
    if diff[0] == "add_column":
        return f"{diff[2]}.{diff[3].name}"
    return diff[1].name


# Plain SQL, as the Ollama-only service wrote it. Ids go through a Uuid-typed bind parameter
# so they are stored the way each backend's Uuid column expects (uuid / CHAR(32) hex).
def insert(conn: sa.Connection, table: str, **values: Any) -> None:
    names = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    statement = sa.text(f"INSERT INTO {table} ({names}) VALUES ({params})")
    uuid_binds = [
        sa.bindparam(name, type_=sa.Uuid())
        for name, v in values.items()
        if isinstance(v, uuid.UUID)
    ]
    conn.execute(statement.bindparams(*uuid_binds), values)


def rows(conn: sa.Connection, sql: str) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.text(sql)))


# --------------------------------------------------------------------------------------- tests


def test_upgrade_and_downgrade_an_empty_database(db_url: str, engine: sa.Engine) -> None:
    upgrade(db_url, "head")
    assert current_revision(engine) == HEAD
    assert tables(engine) == BASELINE_TABLES | ADDED_TABLES

    downgrade(db_url, BASELINE)
    assert current_revision(engine) == BASELINE
    assert tables(engine) == BASELINE_TABLES

    downgrade(db_url, "base")
    assert current_revision(engine) is None
    assert tables(engine) == set()

    upgrade(db_url, "head")  # and back again
    assert current_revision(engine) == HEAD


def test_head_matches_the_models(db_url: str, engine: sa.Engine) -> None:
    upgrade(db_url, BASELINE)
    # Not vacuous: at the baseline the comparison does see what is missing.
    missing = {diff_name(d) for d in schema_diff(engine)}
    assert missing == (
        ADDED_TABLES
        | {f"chats.{c}" for c in ADDED_CHAT_COLUMNS}
        | {f"messages.{c}" for c in ADDED_MESSAGE_COLUMNS}
        | {
            "idx_provider_configs_name",
            "idx_provider_models_provider",
            "ix_pool_deployments_pool_name",
            "fk_chats_experiment_id_experiments",
            "ix_api_keys_user_id",
            "idx_provider_usage_user",
            "idx_provider_usage_created_brin",
            "ix_chats_user_created",
            "ix_messages_chat_created",
            "uq_messages_chat_idempotency",
            "fk_messages_reply_to_id_messages",
            "ix_messages_status_provider",
            "ix_messages_reply_to_id",
            "uq_system_prompts_one_default",
        }
    )

    upgrade(db_url, "head")
    # Types and server defaults included: no difference at all on either backend.
    assert schema_diff(engine) == []


def test_rollback_promise(db_url: str, engine: sa.Engine, legacy_settings: None) -> None:
    upgrade(db_url, BASELINE)

    # --- the Ollama-only service's data, written with plain SQL --------------------------
    alice, bob = uuid.uuid4(), uuid.uuid4()
    prompt = uuid.uuid4()
    chat_a1, chat_a2, chat_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old_messages = {
        uuid.uuid4(): (chat_a1, "user", "Why is the sky blue?"),
        uuid.uuid4(): (chat_a1, "assistant", "Rayleigh scattering: short wavelengths scatter."),
        uuid.uuid4(): (chat_a2, "user", "Hallo 👋 ünïcödé"),
        uuid.uuid4(): (chat_a2, "assistant", "Hallo! " + "lang " * 2000),
        uuid.uuid4(): (chat_b, "user", "ping"),
    }
    with engine.begin() as conn:
        insert(conn, "users", id=alice, email="alice@example.com", password_hash="h1")
        insert(conn, "users", id=bob, email="bob@example.com", password_hash="h2", is_admin=True)
        insert(
            conn,
            "system_prompts",
            id=prompt,
            user_id=alice,
            name="Pirate",
            content="Talk like a pirate.",
        )
        insert(conn, "chats", id=chat_a1, user_id=alice, title="Sky", system_prompt_id=prompt)
        insert(conn, "chats", id=chat_a2, user_id=alice, title="Greetings")
        insert(conn, "chats", id=chat_b, user_id=bob, title="Bob's chat")
        for message_id, (chat_id, role, content) in old_messages.items():
            insert(conn, "messages", id=message_id, chat_id=chat_id, role=role, content=content)

    # --- upgrade: backfill and seed (0002), before 0006 drops the seeded models -----------
    upgrade(db_url, "0005_provider_runtime_columns")
    with engine.connect() as conn:
        chats = rows(conn, "SELECT title, provider_name, model_name FROM chats ORDER BY title")
        assert [tuple(r) for r in chats] == [
            ("Bob's chat", "ollama", LEGACY_MODEL),
            ("Greetings", "ollama", LEGACY_MODEL),
            ("Sky", "ollama", LEGACY_MODEL),
        ]
        replies = rows(
            conn,
            "SELECT role, status, provider_name, model_name, attempts,"
            " completed_at, created_at FROM messages",
        )
        for r in replies:
            if r.role == "assistant":
                assert (r.status, r.provider_name, r.model_name) == (
                    "completed",
                    "ollama",
                    LEGACY_MODEL,
                )
                assert r.completed_at == r.created_at
            else:
                assert (r.status, r.provider_name, r.model_name) == (None, None, None)
                assert r.completed_at is None
            assert r.attempts == 0

        configs = {
            r.provider_name: r
            for r in rows(
                conn,
                "SELECT provider_name, is_enabled, api_endpoint, default_model,"
                " temperature_default, max_tokens, config_json FROM provider_configs",
            )
        }
        assert set(configs) == {"ollama", "anthropic", "openai"}
        ollama, anthropic, openai = configs["ollama"], configs["anthropic"], configs["openai"]
        assert (bool(ollama.is_enabled), ollama.api_endpoint, ollama.default_model) == (
            True,
            "http://gpu-box:11434",
            LEGACY_MODEL,
        )
        assert not anthropic.is_enabled  # no ANTHROPIC_API_KEY
        assert anthropic.api_endpoint is None
        assert (bool(openai.is_enabled), openai.api_endpoint) == (True, "https://api.openai.com/v1")
        assert openai.default_model == get_settings().DEFAULT_OPENAI_MODEL
        assert {r.temperature_default for r in configs.values()} == {0.7}
        assert all(r.config_json is None for r in configs.values())

        models = rows(
            conn,
            "SELECT c.provider_name, m.model_name FROM provider_models m"
            " JOIN provider_configs c ON c.id = m.provider_id",
        )
        by_provider: dict[str, set[str]] = {}
        for r in models:
            by_provider.setdefault(r.provider_name, set()).add(r.model_name)
        settings = get_settings()
        assert by_provider == {
            "ollama": {LEGACY_MODEL, "mistral:7b"},  # de-duplicated
            "anthropic": set(settings.ANTHROPIC_MODELS),
            "openai": set(settings.OPENAI_MODELS),
        }
        # Never an API key in the database.
        dump = repr(rows(conn, "SELECT * FROM provider_configs")) + repr(
            rows(conn, "SELECT * FROM provider_models")
        )
        assert "sk-test-secret-never-stored" not in dump

    # 0006: the seeded models had no prices and were never read; the environment sync at the
    # next start writes them again, and "enabled" is the admins' flag from now on.
    upgrade(db_url, "head")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM provider_models")) == 0
        assert {r.is_enabled for r in rows(conn, "SELECT is_enabled FROM provider_configs")} == {
            True
        }
        assert rows(conn, "SELECT id, version FROM provider_catalog") == [(1, 0)]

    # --- the multi-provider service writes new-style rows ---------------------------------
    chat_new, question, answer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        insert(
            conn,
            "chats",
            id=chat_new,
            user_id=bob,
            title="Multi",
            provider_name="openai",
            model_name="gpt-4",
        )
        insert(
            conn,
            "messages",
            id=question,
            chat_id=chat_new,
            role="user",
            content="Hello GPT",
            idempotency_key="k-1",
        )
        insert(
            conn,
            "messages",
            id=answer,
            chat_id=chat_new,
            role="assistant",
            content="Hi from GPT",
            status="running",
            provider_name="openai",
            model_name="gpt-4",
            reply_to_id=question,
            attempts=1,
            temperature=0.2,
        )
        insert(
            conn,
            "provider_usage",
            user_id=bob,
            chat_id=chat_new,
            message_id=answer,
            provider_name="openai",
            model_name="gpt-4",
            tokens_used=12,
            cost="0.000360",
        )
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at)"
                " VALUES (:id, :user_id, 'cli', 'sb_abc', :h, CURRENT_TIMESTAMP)"
            ).bindparams(
                sa.bindparam("id", type_=sa.Uuid()), sa.bindparam("user_id", type_=sa.Uuid())
            ),
            {"id": uuid.uuid4(), "user_id": alice, "h": "0" * 64},
        )
    new_messages = {
        question: (chat_new, "user", "Hello GPT"),
        answer: (chat_new, "assistant", "Hi from GPT"),
    }

    # --- roll back to the baseline: every user, chat and message stays --------------------
    downgrade(db_url, BASELINE)
    assert current_revision(engine) == BASELINE
    assert tables(engine) == BASELINE_TABLES
    assert columns(engine, "chats").isdisjoint(ADDED_CHAT_COLUMNS)
    assert columns(engine, "messages").isdisjoint(ADDED_MESSAGE_COLUMNS)
    id_type = sa.Uuid()
    with engine.connect() as conn:
        users = {
            r.email: (r.is_admin, r.password_hash)
            for r in rows(conn, "SELECT email, is_admin, password_hash FROM users")
        }
        assert users == {"alice@example.com": (False, "h1"), "bob@example.com": (True, "h2")}
        prompts = rows(conn, "SELECT name, content FROM system_prompts")
        assert [tuple(r) for r in prompts] == [("Pirate", "Talk like a pirate.")]
        chats = {r.title: r for r in rows(conn, "SELECT title, system_prompt_id FROM chats")}
        assert set(chats) == {"Sky", "Greetings", "Bob's chat", "Multi"}
        assert chats["Sky"].system_prompt_id is not None
        query = sa.text("SELECT id, chat_id, role, content FROM messages").columns(
            id=id_type, chat_id=id_type
        )
        messages = {r.id: (r.chat_id, r.role, r.content) for r in conn.execute(query)}
        assert messages == old_messages | new_messages

    # --- and forward again ----------------------------------------------------------------
    upgrade(db_url, "head")
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM messages")) == 7
        assert conn.scalar(sa.text("SELECT count(*) FROM provider_configs")) == 3
        # What the downgrade lost comes back as the baseline's defaults.
        multi = conn.execute(
            sa.text("SELECT provider_name, model_name FROM chats WHERE title = 'Multi'")
        ).one()
        assert tuple(multi) == ("ollama", LEGACY_MODEL)
        if engine.dialect.name == "sqlite":
            assert rows(conn, "PRAGMA foreign_key_check") == []


def test_sqlite_rebuild_with_foreign_keys_on_cascades_nothing(tmp_path: Path) -> None:
    """Batch mode rebuilds `messages` and `chats` on SQLite; env.py must switch foreign keys
    off first even when handed a connection that has them on, or DROP TABLE would cascade."""
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    upgrade(url, BASELINE)
    eng = make_engine(url)
    try:
        user, chat = uuid.uuid4(), uuid.uuid4()
        with eng.begin() as conn:
            insert(conn, "users", id=user, email="fk@example.com", password_hash="h")
            insert(conn, "chats", id=chat, user_id=user, title="kept")
            insert(conn, "messages", id=uuid.uuid4(), chat_id=chat, role="user", content="hi")
        for target in ("head", BASELINE, "head"):
            with eng.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                config = alembic_config(url)
                config.attributes["connection"] = conn
                if target == BASELINE:
                    command.downgrade(config, target)
                else:
                    command.upgrade(config, target)
                conn.commit()
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with eng.connect() as conn:
                assert conn.scalar(sa.text("SELECT count(*) FROM messages")) == 1
                assert conn.scalar(sa.text("SELECT count(*) FROM chats")) == 1
                assert rows(conn, "PRAGMA foreign_key_check") == []
    finally:
        eng.dispose()


def test_sqlite_connection_in_a_transaction_with_foreign_keys_on_is_refused(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    upgrade(url, BASELINE)
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            insert(conn, "users", id=uuid.uuid4(), email="busy@example.com", password_hash="h")
            config = alembic_config(url)
            config.attributes["connection"] = conn
            with pytest.raises(RuntimeError, match="foreign keys ON and an open transaction"):
                command.upgrade(config, "head")
        assert current_revision(eng) == BASELINE
    finally:
        eng.dispose()


def test_offline_sql_for_postgresql_seeds_without_api_keys(legacy_settings: None) -> None:
    """`alembic upgrade head --sql` renders the whole migration, data steps included."""
    buffer = io.StringIO()
    config = Config(str(REPO_ROOT / "alembic.ini"), output_buffer=buffer)
    config.attributes["sqlalchemy.url"] = "postgresql+psycopg2://nobody@localhost/none"
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE provider_configs" in sql
    assert "CREATE INDEX idx_provider_usage_date ON provider_usage (created_at)" in sql
    assert f"UPDATE chats SET model_name='{LEGACY_MODEL}'" in sql
    assert "INSERT INTO provider_models" in sql
    assert "sk-test-secret-never-stored" not in sql


def test_0005_marks_existing_providers_as_environment_rows_with_their_adapter(
    db_url: str, engine: sa.Engine
) -> None:
    upgrade(db_url, "0004_admin_analytics")
    with engine.begin() as conn:
        # A compatible server's row, as a deployment's own seeding might have written it.
        insert(conn, "provider_configs", provider_name="vllm", is_enabled=True)
    upgrade(db_url, "0005_provider_runtime_columns")
    with engine.connect() as conn:
        found = {
            r.provider_name: (r.adapter, r.source, r.display_name, r.api_key_encrypted)
            for r in rows(
                conn,
                "SELECT provider_name, adapter, source, display_name, api_key_encrypted"
                " FROM provider_configs",
            )
        }
    assert found == {
        "ollama": ("ollama", "environment", None, None),
        "anthropic": ("anthropic", "environment", None, None),
        "openai": ("openai", "environment", None, None),
        "vllm": ("openai_compatible", "environment", None, None),
    }
    # Only the two sources exist.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE provider_configs SET source = 'plugin'"))

    downgrade(db_url, "0004_admin_analytics")
    assert columns(engine, "provider_configs").isdisjoint(
        {"adapter", "source", "display_name", "api_key_encrypted"}
    )
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM provider_configs")) == 4
