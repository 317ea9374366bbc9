"""GET /admin/usage's `order` and `limit`: the top groups (e.g. the users who cost most), with
the same figures as the full report, from the rows and from the rollups."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

from sqlalchemy import insert

from shared.db import session_scope
from shared.models import ProviderUsage
from shared.usage import rollup
from shared.usage.analytics import usage_analytics
from tests.api.test_admin_users import make_admin, user_id
from tests.helpers import register_and_login

AT = dt.datetime(2026, 11, 10, 9, 15, tzinfo=dt.UTC)
RANGE = "from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z"
# Per user: (cost of each row or None for unpriced, number of rows). A user id of None stands
# for a deleted user's rows (user_id null), which are a group of their own.
PLAN = {
    "u0": ("0.500000", 1),  # cost 0.5
    "u1": ("0.100000", 3),  # cost 0.3, 3 requests: before u4 on the tie
    "u2": ("0.200000", 2),  # cost 0.4
    "u3": (None, 5),  # unpriced: last by cost, first by requests
    "u4": ("0.150000", 2),  # cost 0.3, 2 requests
    None: ("0.050000", 4),  # cost 0.2, 4 requests
}


def rows_for(uid: uuid.UUID | None, cost: str | None, count: int, at: dt.datetime) -> list[dict]:
    return [
        {
            "user_id": uid,
            "provider_name": "openai" if n % 2 == 0 else "anthropic",
            "model_name": "gpt-4" if n % 2 == 0 else "claude",
            "prompt_tokens": 10 * (n + 1),
            "completion_tokens": 5,
            "tokens_used": 10 * (n + 1) + 5,
            "cost": Decimal(cost) if cost else None,
            "status": "failed" if n == 2 else "completed",
            "response_time_ms": 100 * (n + 1),
            "time_to_first_token_ms": 10 * (n + 1),
            "created_at": at + dt.timedelta(minutes=n),
        }
        for n in range(count)
    ]


def seed(client, at: dt.datetime = AT) -> tuple[dict[str, str], dict[str, str]]:
    """The PLAN's rows; returns the admin's headers and each plan name's email."""
    headers, _ = make_admin(client)
    emails = {}
    rows = []
    for name, (cost, count) in PLAN.items():
        uid = None
        if name is not None:
            emails[name] = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
            register_and_login(client, emails[name])
            uid = user_id(emails[name])
        rows += rows_for(uid, cost, count, at)
    with session_scope() as session:
        session.execute(insert(ProviderUsage), rows)
    return headers, emails


def report(client, headers, params: str) -> list[dict]:
    answer = client.get(f"/admin/usage?{RANGE}&{params}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def names(groups: list[dict], emails: dict[str, str]) -> list[str | None]:
    by_email = {email: name for name, email in emails.items()}
    return [by_email[g["user_email"]] if g["user_id"] else None for g in groups]


def test_top_users_by_cost_then_requests(client):
    headers, emails = seed(client)
    top = report(client, headers, "group_by=user&order=cost&limit=3")
    assert names(top, emails) == ["u0", "u2", "u1"]
    assert [Decimal(g["cost"]) for g in top] == [Decimal("0.5"), Decimal("0.4"), Decimal("0.3")]
    # Every group in order: the tie on cost goes to more requests; unpriced comes last.
    ordered = report(client, headers, "group_by=user&order=cost")
    assert names(ordered, emails) == ["u0", "u2", "u1", "u4", None, "u3"]
    by_requests = report(client, headers, "group_by=user&order=requests&limit=3")
    assert names(by_requests, emails) == ["u3", None, "u1"]
    assert [g["requests"] for g in by_requests] == [5, 4, 3]
    # A limit alone orders by requests.
    assert names(report(client, headers, "group_by=user&limit=2"), emails) == ["u3", None]
    by_tokens = report(client, headers, "group_by=user&order=total_tokens&limit=1")
    assert names(by_tokens, emails) == ["u3"] and by_tokens[0]["total_tokens"] == 175


def test_limited_groups_have_the_full_reports_figures(client):
    """The top groups are picked first, then measured: the figures (percentiles included, and
    the deleted users' group, matched by IS NULL) equal those of the report without a limit."""
    headers, _ = seed(client)
    full = {g["user_id"]: g for g in report(client, headers, "group_by=user")}
    assert len(full) == len(PLAN)
    top = report(client, headers, "group_by=user&order=requests&limit=4")
    assert [g["user_id"] for g in top][1] is None
    for group in top:
        assert group == full[group["user_id"]]
    deleted = top[1]
    assert deleted["requests"] == 4 and Decimal(deleted["cost"]) == Decimal("0.2")
    assert deleted["response_time_ms_p50"] == 250.0  # 100, 200, 300, 400
    assert deleted["error_rate"] == 0.25

    # Two keys (a row-value IN), one of them null for the deleted user.
    pairs = {
        (g["user_id"], g["provider"]): g for g in report(client, headers, "group_by=user,provider")
    }
    top_pairs = report(client, headers, "group_by=user,provider&order=cost&limit=3")
    assert len(top_pairs) == 3
    for group in top_pairs:
        assert group == pairs[(group["user_id"], group["provider"])]
    costs = [Decimal(g["cost"]) for g in top_pairs]
    assert costs == sorted(costs, reverse=True)
    rest = [Decimal(g["cost"]) for k, g in pairs.items() if g not in top_pairs and g["cost"]]
    assert max(rest) <= costs[-1]


def test_order_and_limit_from_the_rollups(client, monkeypatch):
    """A long range answered from the rollups (no user grouping) is ordered and cut the same."""
    at = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=3)
    headers, _ = seed(client, at)
    monkeypatch.setattr(usage_analytics, "exact_percentile_rows", -1)
    used = []
    report_groups = rollup.report_groups

    def recording(*args):  # type: ignore[no-untyped-def]
        used.append(args)
        return report_groups(*args)

    monkeypatch.setattr(rollup, "report_groups", recording)
    since = (at - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    answer = client.get(f"/admin/usage?group_by=model&order=cost&from={since}", headers=headers)
    assert answer.status_code == 200, answer.text
    groups = answer.json()["data"]
    assert used, "the report did not come from the rollups"
    # gpt-4 rows (n even): u0 0.5, u1 0.2, u2 0.2, u4 0.15, deleted 0.1; claude the rest.
    assert [(g["model"], Decimal(g["cost"])) for g in groups] == [
        ("gpt-4", Decimal("1.15")),
        ("claude", Decimal("0.55")),
    ]
    limited = client.get(
        f"/admin/usage?group_by=model&order=requests&limit=1&from={since}", headers=headers
    ).json()["data"]
    assert [(g["model"], g["requests"]) for g in limited] == [("gpt-4", 10)]


def test_csv_keeps_the_order_and_limit(client):
    headers, emails = seed(client)
    answer = client.get(
        f"/admin/usage?group_by=user&order=cost&limit=2&{RANGE}",
        headers={**headers, "Accept": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert [line["user_email"] for line in lines] == [emails["u0"], emails["u2"]]


def test_bad_order_or_limit_is_422(client):
    headers, _ = seed(client)
    for params in ("order=latency", "order=", "limit=0", "limit=1001", "limit=ten", "limit=-1"):
        answer = client.get(f"/admin/usage?group_by=user&{params}", headers=headers)
        assert answer.status_code == 422, (params, answer.text)
        assert "error" in answer.json()
