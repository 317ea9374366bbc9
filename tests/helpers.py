"""Small helpers shared by API and pipeline tests."""

from __future__ import annotations

import uuid
from typing import Any


def register_and_login(
    client: Any, email: str | None = None, password: str = "correct horse battery"
) -> dict[str, str]:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    token = client.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}
