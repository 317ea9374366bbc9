"""Alembic environment for Switchboard.

Where the database is, in order of precedence:
1. ``config.attributes["connection"]``: an open SQLAlchemy Connection (tests, embedding code);
   the caller owns it and commits (except on SQLite with foreign keys ON, see below).
2. ``config.attributes["sqlalchemy.url"]``: a URL string (tests, ``switchboard migrate``).
3. ``sqlalchemy.url`` set on the Config object (``config.set_main_option``).
4. ``DATABASE_URL`` through ``shared.settings.get_settings()`` (environment or ``.env``).

``config.attributes["configure_logger"] = False`` skips the logging set-up of alembic.ini.
On SQLite, foreign keys are switched off while migrating (batch mode rebuilds tables) and
back on afterwards; see _sqlite_foreign_keys_off.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from shared.models import Base

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("sqlalchemy.url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from shared.settings import get_settings

    return get_settings().DATABASE_URL


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _sqlite_foreign_keys_off(connection: Connection) -> bool:
    """Switch SQLite foreign keys off; True if they were on.

    Batch mode rebuilds a table: copy, DROP the original, rename the copy. With foreign keys
    ON, dropping `chats` would cascade-delete every message. SQLite ignores the pragma inside a
    transaction, so a connection already in one cannot be migrated safely.
    """
    if not connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return False
    if connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        raise RuntimeError(
            "SQLite connection has foreign keys ON and an open transaction; table rebuilds "
            "would cascade deletes. Commit first, or pass a connection without the pragma."
        )
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    return True


def _run_on_connection(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    caller_transaction = connection.in_transaction()
    restore_fks = _sqlite_foreign_keys_off(connection) if sqlite else False
    if sqlite and not caller_transaction:
        connection.commit()  # end the autobegun pragma transaction; alembic opens its own
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    except BaseException:
        if restore_fks:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
        raise
    if restore_fks:
        # The pragma needs no open transaction: commit the migration, then switch back on.
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = _database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on_connection(connection)
        return
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on_connection(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
