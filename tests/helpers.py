"""Small helpers shared by API and pipeline tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.engine import make_url


def register_and_login(
    client: Any, email: str | None = None, password: str = "correct horse battery"
) -> dict[str, str]:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    token = client.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def recreate_migrated_database(url: str) -> None:
    """Drop and create the PostgreSQL database named in `url`, then `alembic upgrade head`."""
    import alembic.command as command
    import psycopg2

    from shared.cli import alembic_config

    target = make_url(url)
    admin = psycopg2.connect(
        host=target.host,
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        dbname="postgres",
    )
    admin.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{target.database}"')
    admin.close()
    command.upgrade(alembic_config(url), "head")
