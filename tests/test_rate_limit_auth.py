"""Login and registration attempts are limited per client IP and per email, through Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from shared.accounts import service as accounts
from shared.accounts.rate_limit import auth_rate_limiter
from shared.redis_client import async_redis
from shared.settings import get_settings
from tests.e2e.harness import free_port

PASSWORD = "correct horse battery"


@pytest.fixture
def limits(client) -> Iterator[dict[str, int]]:
    """Small limits for the test's requests (TestClient's requests all come from one IP)."""
    from api.main import app

    values = {"AUTH_RATE_LIMIT_PER_IP_PER_MINUTE": 6, "AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE": 3}
    settings = get_settings().model_copy(update=values)
    app.dependency_overrides[get_settings] = lambda: settings
    yield values
    app.dependency_overrides.pop(get_settings, None)


@pytest.fixture
def argon2_calls(monkeypatch) -> list[str]:
    """Records every password hash and verification the account service runs."""
    calls: list[str] = []
    hash_password, verify_password = accounts.hash_password, accounts.verify_password

    def counted_hash(password: str) -> str:
        calls.append("hash")
        return hash_password(password)

    def counted_verify(password: str, password_hash: str) -> bool:
        calls.append("verify")
        return verify_password(password, password_hash)

    monkeypatch.setattr(accounts, "hash_password", counted_hash)
    monkeypatch.setattr(accounts, "verify_password", counted_verify)
    return calls


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


def _register(client, email: str):
    return client.post("/auth/register", json={"email": email, "password": PASSWORD})


def _login(client, email: str, password: str = PASSWORD):
    return client.post("/auth/token", data={"username": email, "password": password})


def _assert_limited(response) -> None:
    assert response.status_code == 429
    assert response.json()["error"] == "RateLimited" and response.json()["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_logins_for_one_email_are_limited_before_argon2_runs(client, limits, argon2_calls):
    email = _email()
    assert _register(client, email).status_code == 201
    assert _login(client, email, "wrong").status_code == 401
    assert _login(client, email, "wrong").status_code == 401
    assert _login(client, email).status_code == 200
    argon2_calls.clear()

    _assert_limited(_login(client, email))  # the right password, but too many attempts
    _assert_limited(_login(client, email.upper(), "wrong"))  # the same account
    assert argon2_calls == []  # refused without hashing anything
    # Another account from the same client is not affected.
    assert _login(client, _email(), "wrong").status_code == 401


def test_attempts_from_one_client_are_limited_across_emails(client, limits, argon2_calls):
    per_ip = limits["AUTH_RATE_LIMIT_PER_IP_PER_MINUTE"]
    for _ in range(per_ip):
        assert _login(client, _email(), "wrong").status_code == 401
    argon2_calls.clear()
    _assert_limited(_login(client, _email(), "wrong"))
    assert argon2_calls == []


def test_registrations_are_limited_per_client_and_per_email(client, limits, argon2_calls):
    per_ip, per_account = (
        limits["AUTH_RATE_LIMIT_PER_IP_PER_MINUTE"],
        limits["AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE"],
    )
    email = _email()
    assert _register(client, email).status_code == 201
    for _ in range(per_account - 1):
        assert _register(client, email).status_code == 409
    _assert_limited(_register(client, email))

    # Every attempt from this client counted, the refused one too.
    for _ in range(per_ip - per_account - 1):
        assert _register(client, _email()).status_code == 201
    argon2_calls.clear()
    _assert_limited(_register(client, _email()))
    assert argon2_calls == []
    # Logins are counted on their own: registering did not use them up.
    assert _login(client, email).status_code == 200


def test_zero_turns_a_limit_off(client):
    from api.main import app

    values = {"AUTH_RATE_LIMIT_PER_IP_PER_MINUTE": 0, "AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE": 0}
    settings = get_settings().model_copy(update=values)
    app.dependency_overrides[get_settings] = lambda: settings
    try:
        email = _email()
        for _ in range(12):
            assert _login(client, email, "wrong").status_code == 401
    finally:
        app.dependency_overrides.pop(get_settings, None)


def test_logins_still_work_while_redis_is_down(client, limits, caplog, monkeypatch):
    from api.main import app

    monkeypatch.setattr(auth_rate_limiter, "_last_warning", float("-inf"))

    email = _email()
    assert _register(client, email).status_code == 201
    working = app.state.redis
    app.state.redis = async_redis(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    try:
        with caplog.at_level(logging.WARNING, logger="shared.accounts.rate_limit"):
            for _ in range(limits["AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE"] + 1):
                assert _login(client, email).status_code == 200
    finally:
        app.state.redis = working
    assert "Redis unavailable" in caplog.text


def test_the_limit_is_documented(client):
    responses = client.get("/openapi.json").json()["paths"]["/auth/token"]["post"]["responses"]
    assert "429" in responses
