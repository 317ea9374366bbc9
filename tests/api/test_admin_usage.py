"""GET /admin/usage and GET /usage's analytics: totals, groups, filters, rates, percentiles, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import ProviderUsage
from tests.api.test_admin_users import make_admin, user_id
from tests.helpers import register_and_login

DAY1 = dt.datetime(2026, 11, 10, 9, 15, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 11, 11, 22, 40, tzinfo=dt.UTC)
RANGE = "from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z"


def add(
    email: str,
    provider: str,
    model: str,
    at: dt.datetime,
    *,
    prompt: int = 10,
    completion: int = 5,
    cost: str | None = "0.000100",
    status: str = "completed",
    response_ms: int | None = 1000,
    ttft_ms: int | None = 100,
) -> None:
    with session_scope() as session:
        session.add(
            ProviderUsage(
                user_id=user_id(email),
                provider_name=provider,
                model_name=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                tokens_used=prompt + completion,
                cost=Decimal(cost) if cost else None,
                status=status,
                response_time_ms=response_ms,
                time_to_first_token_ms=ttft_ms,
                created_at=at,
            )
        )


def seed(client) -> tuple[dict[str, str], str, str]:
    """Known rows for two users; returns the admin's headers and the two emails."""
    headers, _ = make_admin(client)
    alice = f"alice-{uuid.uuid4().hex[:6]}@example.com"
    bob = f"bob-{uuid.uuid4().hex[:6]}@example.com"
    register_and_login(client, alice)
    register_and_login(client, bob)
    # openai/gpt-4 on day 1: four rows, latencies 100..400, one failed, one cancelled.
    add(alice, "openai", "gpt-4", DAY1, response_ms=100, ttft_ms=10, cost="0.000000035")
    add(alice, "openai", "gpt-4", DAY1, response_ms=200, ttft_ms=20, status="failed", cost=None)
    add(bob, "openai", "gpt-4", DAY1, response_ms=300, ttft_ms=None, status="cancelled")
    add(bob, "openai", "gpt-4", DAY1, response_ms=400, ttft_ms=40, prompt=1000, completion=500)
    # anthropic on day 2, unpriced.
    add(alice, "anthropic", "claude", DAY2, cost=None, response_ms=50, ttft_ms=5)
    add(bob, "anthropic", "claude", DAY2, cost=None, response_ms=None, ttft_ms=None)
    # Outside the range: never counted.
    add(alice, "openai", "gpt-4", dt.datetime(2026, 10, 1, tzinfo=dt.UTC), prompt=99999)
    return headers, alice, bob


def stored_totals(start: dt.datetime, end: dt.datetime) -> tuple[int, int, int, Decimal]:
    with session_scope() as session:
        requests, prompt, completion, cost = session.execute(
            select(
                func.count(),
                func.sum(ProviderUsage.prompt_tokens),
                func.sum(ProviderUsage.completion_tokens),
                func.sum(ProviderUsage.cost),
            ).where(ProviderUsage.created_at >= start, ProviderUsage.created_at < end)
        ).one()
    return requests, prompt, completion, cost


def test_totals_equal_the_sum_of_the_stored_rows(client):
    headers, _, _ = seed(client)
    start, end = dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for group_by in ("day", "provider", "model", "user", "hour", "user,provider,day"):
        report = client.get(f"/admin/usage?group_by={group_by}&{RANGE}", headers=headers)
        assert report.status_code == 200, report.text
        data = report.json()["data"]
        summed = (
            sum(g["requests"] for g in data),
            sum(g["prompt_tokens"] for g in data),
            sum(g["completion_tokens"] for g in data),
            sum((Decimal(g["cost"]) for g in data if g["cost"] is not None), Decimal(0)),
        )
        assert summed == stored_totals(start, end), group_by
        assert all(g["total_tokens"] == g["prompt_tokens"] + g["completion_tokens"] for g in data)


def test_groups_rates_and_percentiles_on_known_rows(client):
    headers, alice, bob = seed(client)
    report = client.get(f"/admin/usage?group_by=day,provider&{RANGE}", headers=headers).json()
    assert report["group_by"] == ["day", "provider"]
    groups = {(g["day"], g["provider"]): g for g in report["data"]}
    assert list(groups) == [("2026-11-10", "openai"), ("2026-11-11", "anthropic")]
    openai = groups[("2026-11-10", "openai")]
    assert openai["requests"] == 4
    assert openai["prompt_tokens"] == 1030 and openai["completion_tokens"] == 515
    assert openai["cost"] == "0.000200035"  # plain notation, every decimal kept
    assert openai["error_rate"] == 0.25 and openai["cancel_rate"] == 0.25
    # percentile_cont over 100, 200, 300, 400: 250 and 385; TTFT ignores the missing value.
    assert openai["response_time_ms_p50"] == 250.0
    assert openai["response_time_ms_p95"] == 385.0
    assert openai["time_to_first_token_ms_p50"] == 20.0
    assert openai["time_to_first_token_ms_p95"] == 38.0
    assert openai["user_id"] is None and openai["model"] is None
    anthropic = groups[("2026-11-11", "anthropic")]
    assert anthropic["cost"] is None  # unpriced, not zero
    assert anthropic["response_time_ms_p50"] == 50.0

    by_user = client.get(f"/admin/usage?group_by=user&{RANGE}", headers=headers).json()["data"]
    users = {g["user_email"]: g for g in by_user}
    assert users[alice]["requests"] == 3 and users[bob]["requests"] == 3
    assert users[alice]["user_id"] == str(user_id(alice))

    hours = client.get(f"/admin/usage?group_by=hour&{RANGE}", headers=headers).json()["data"]
    assert [(h["hour"], h["requests"]) for h in hours] == [
        ("2026-11-10T09:00:00Z", 4),
        ("2026-11-11T22:00:00Z", 2),
    ]


def test_filters(client):
    headers, alice, _ = seed(client)

    def requests(params: str) -> int:
        answer = client.get(f"/admin/usage?group_by=provider&{RANGE}&{params}", headers=headers)
        assert answer.status_code == 200, answer.text
        return sum(g["requests"] for g in answer.json()["data"])

    assert requests("provider=openai") == 4
    assert requests("model=claude") == 2
    assert requests(f"user_id={user_id(alice)}") == 3
    assert requests("status=failed") == 1
    assert requests("provider=openai&status=completed") == 2
    assert requests("provider=nope") == 0
    narrow = "from=2026-11-11T00:00:00Z&to=2026-11-12T00:00:00Z"
    day2 = client.get(f"/admin/usage?group_by=day&{narrow}", headers=headers).json()["data"]
    assert [(g["day"], g["requests"]) for g in day2] == [("2026-11-11", 2)]


def test_bad_queries_are_422(client):
    headers, _, _ = seed(client)
    for params in (
        "group_by=week",
        "group_by=day,day",
        "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "status=running",
        "user_id=nope",
        "from=yesterday",
        # Outside years 1..9999 once in UTC.
        "from=0001-01-01T00:00:00%2B05:00",
        "to=9999-12-31T23:59:59-05:00",
        "to=0001-01-02T00:00:00Z",
    ):
        answer = client.get(f"/admin/usage?{params}", headers=headers)
        assert answer.status_code == 422, (params, answer.text)
        assert "error" in answer.json()


def test_csv_parses_and_matches_json(client):
    headers, _, _ = seed(client)
    url = f"/admin/usage?group_by=user,provider,day&{RANGE}"
    as_json = client.get(url, headers=headers).json()["data"]
    answer = client.get(url, headers=headers | {"Accept": "text/csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0])[:4] == ["user_id", "user_email", "provider", "day"]
    assert len(rows) == len(as_json) == 4
    for row, group in zip(rows, as_json, strict=True):
        assert row["user_email"] == group["user_email"]
        assert (row["provider"], row["day"]) == (group["provider"], group["day"])
        assert int(row["requests"]) == group["requests"]
        assert int(row["total_tokens"]) == group["total_tokens"]
        assert row["cost"] == (group["cost"] or "")
        assert float(row["error_rate"]) == group["error_rate"]
        p95 = group["response_time_ms_p95"]
        assert (float(row["response_time_ms_p95"]) if row["response_time_ms_p95"] else None) == p95


def test_users_usage_keeps_its_shape_and_groups_their_own_rows_only(client):
    _, alice, _ = seed(client)
    alice_headers = {
        "Authorization": client.post(
            "/auth/token", data={"username": alice, "password": "correct horse battery"}
        ).json()["access_token"]
    }
    alice_headers = {"Authorization": f"Bearer {alice_headers['Authorization']}"}
    plain = client.get("/usage", headers=alice_headers).json()
    assert set(plain) == {"since", "data"}  # the default report is unchanged

    mine = client.get(f"/usage?group_by=provider&{RANGE}", headers=alice_headers).json()
    assert {g["provider"]: g["requests"] for g in mine["data"]} == {"openai": 2, "anthropic": 1}
    # Another user's id in the query does not widen it: only the caller's rows.
    other = client.get(f"/usage?group_by=user&{RANGE}", headers=alice_headers).json()["data"]
    assert [g["user_email"] for g in other] == [alice]
    as_csv = client.get(
        f"/usage?group_by=day&{RANGE}", headers=alice_headers | {"Accept": "text/csv"}
    )
    assert as_csv.text.splitlines()[0].startswith("day,requests,")
    assert client.get("/usage?group_by=week", headers=alice_headers).status_code == 422
