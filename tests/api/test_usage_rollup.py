"""The usage rollups (migration 0007, shared/usage/rollup.py) on real PostgreSQL: reports from
them equal the stored rows, whatever part of a range comes from where, and the rollup cells
stay equal to the rows through late inserts, deletes, updates and concurrent writers."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.db import get_engine, make_engine, session_scope
from shared.models import ProviderUsage, User
from shared.usage import rollup
from shared.usage.analytics import build_query, usage_analytics
from tests.api.test_admin_users import make_admin
from tests.test_migrations import downgrade, pg_url, upgrade  # noqa: F401 - pg_url: a fixture

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
SAME_EITHER_WAY = (
    "day",
    "hour",
    "provider",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "error_rate",
    "cancel_rate",
)
PERCENTILES = (
    "response_time_ms_p50",
    "response_time_ms_p95",
    "time_to_first_token_ms_p50",
    "time_to_first_token_ms_p95",
)
GROUPINGS = ("day", "provider", "model", "hour", "provider,day", "model,hour")


def db_now() -> dt.datetime:
    with session_scope() as session:
        return session.scalar(select(func.now()))


def floor_hour(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def usage(at: dt.datetime, n: int = 0, **fields: Any) -> dict[str, Any]:
    """One usage row; `n` varies the figures so that groups differ."""
    row = {
        "user_id": None,
        "provider_name": ("openai", "anthropic", "ollama")[n % 3],
        "model_name": ("gpt-4", "claude", "llama3", "gpt-4-mini")[n % 4],
        "prompt_tokens": 10 + n * 7 % 900,
        "completion_tokens": 5 + n * 13 % 400,
        "cost": None if n % 5 == 0 else Decimal("0.000000001") * (1 + n * 37 % 100_000),
        "status": {6: "failed", 7: "cancelled"}.get(n % 8, "completed"),
        "response_time_ms": None if n % 11 == 0 else 3 + n * 97 % 9000,
        "time_to_first_token_ms": None if n % 7 == 0 else 1 + n * 31 % 800,
        "created_at": at,
    }
    row.update(fields)
    return row


def store(rows: list[dict[str, Any]]) -> None:
    with session_scope() as session:
        session.execute(insert(ProviderUsage), rows)


def new_user() -> uuid.UUID:
    with session_scope() as session:
        user = User(email=f"u-{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
        session.add(user)
        session.flush()
        return user.id


def state(engine: Engine | None = None) -> tuple[dt.datetime | None, dt.date | None]:
    with (engine or get_engine()).connect() as conn:
        row = conn.execute(
            text("SELECT hours_before, days_before FROM usage_rollup_state")
        ).one_or_none()
    return (row[0], row[1]) if row else (None, None)


def stored(start: dt.datetime, end: dt.datetime, **where: str) -> dict[str, Any]:
    """What a user would add up by hand: the stored rows of the range."""
    with session_scope() as session:
        conditions = [ProviderUsage.created_at >= start, ProviderUsage.created_at < end]
        for column, value in where.items():
            conditions.append(getattr(ProviderUsage, column) == value)
        requests, prompt, completion, cost = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ProviderUsage.prompt_tokens), 0),
                func.coalesce(func.sum(ProviderUsage.completion_tokens), 0),
                func.sum(ProviderUsage.cost),
            ).where(*conditions)
        ).one()
    return {"requests": requests, "prompt": prompt, "completion": completion, "cost": cost}


def summed(groups: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [Decimal(g["cost"]) for g in groups if g["cost"] is not None]
    return {
        "requests": sum(g["requests"] for g in groups),
        "prompt": sum(g["prompt_tokens"] for g in groups),
        "completion": sum(g["completion_tokens"] for g in groups),
        "cost": sum(costs, Decimal(0)) if costs else None,
    }


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def layouts(monkeypatch) -> list[rollup.Plan]:
    """Every report answers from the rollups; the list records each report's layout."""
    monkeypatch.setattr(usage_analytics, "exact_percentile_rows", -1)
    seen: list[rollup.Plan] = []
    report_groups = rollup.report_groups

    def recording(session, group_by, filters, layout):  # type: ignore[no-untyped-def]
        seen.append(layout)
        return report_groups(session, group_by, filters, layout)

    monkeypatch.setattr(rollup, "report_groups", recording)
    return seen


def histogram(buckets: list[int], counts: list[int]) -> Counter[int]:
    return Counter(dict(zip(buckets, counts, strict=True)))


def empty_cell() -> dict[str, Any]:
    return {
        "n": 0,
        "priced": 0,
        "pt": 0,
        "ct": 0,
        "cost": Decimal(0),
        "rt": Counter(),
        "tt": Counter(),
    }


def rollups_equal_rows(engine: Engine | None = None) -> None:
    """Every cell before the watermarks equals its rows, histograms included; no extra cell."""
    hours_before, days_before = state(engine)
    assert hours_before is not None and days_before is not None
    midnight = dt.datetime.combine(days_before, dt.time(), dt.UTC)
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT created_at, provider_name, model_name, coalesce(status, ''),"
                " prompt_tokens, completion_tokens, cost,"
                " usage_latency_bucket(response_time_ms),"
                " usage_latency_bucket(time_to_first_token_ms)"
                " FROM provider_usage"
            )
        ).all()
        tables = {
            "hour": conn.execute(text("SELECT * FROM usage_rollup_hourly")).mappings().all(),
            "day": conn.execute(text("SELECT * FROM usage_rollup_daily")).mappings().all(),
        }
    for period, before in (("hour", hours_before), ("day", midnight)):
        expected: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(empty_cell)
        for at, provider, model, status, pt, ct, cost, rb, tb in rows:
            if at >= before:
                continue
            utc = at.astimezone(dt.UTC)
            when = floor_hour(utc) if period == "hour" else utc.date()
            cell = expected[(when, provider, model, status)]
            cell["n"] += 1
            cell["priced"] += cost is not None
            cell["pt"] += pt or 0
            cell["ct"] += ct or 0
            cell["cost"] += cost or 0
            if rb is not None:
                cell["rt"][rb] += 1
            if tb is not None:
                cell["tt"][tb] += 1
        actual = {}
        for cell in tables[period]:
            when = cell[period]
            when = when.astimezone(dt.UTC) if period == "hour" else when
            buckets = cell["response_ms_buckets"]
            assert buckets == sorted(buckets)
            actual[(when, cell["provider_name"], cell["model_name"], cell["status"])] = {
                "n": cell["requests"],
                "priced": cell["priced_requests"],
                "pt": cell["prompt_tokens"],
                "ct": cell["completion_tokens"],
                "cost": cell["cost"],
                "rt": histogram(buckets, cell["response_ms_counts"]),
                "tt": histogram(cell["ttft_ms_buckets"], cell["ttft_ms_counts"]),
            }
        assert actual == dict(expected), period


def test_reports_from_rollups_equal_the_stored_rows(client, layouts):
    headers, _ = make_admin(client)
    now = db_now()
    this_hour = floor_hour(now)
    # Three days of rows, every 17 minutes, plus some in the open hour.
    rows = [usage(now - n * dt.timedelta(minutes=17), n) for n in range(1, 260)]
    rows += [usage(this_hour + dt.timedelta(seconds=n), 1000 + n) for n in range(3)]
    store(rows)

    # The first report rolls the closed hours up; later ones find them done.
    first = client.get("/admin/usage?group_by=provider", headers=headers)
    assert first.status_code == 200, first.text
    hours_before, days_before = state()
    assert hours_before == this_hour or hours_before == this_hour - HOUR  # the 5-minute margin
    assert days_before == hours_before.astimezone(dt.UTC).date()
    rollups_equal_rows()

    # After the roll-up: rows older than the watermarks (a clock behind, an import), rows
    # deleted with their user, an update of a summed column, and new rows in the open hour.
    owner = new_user()
    store([usage(now - dt.timedelta(days=2, minutes=n), 2000 + n, user_id=owner) for n in range(9)])
    store([usage(now - dt.timedelta(hours=30, minutes=n), 3000 + n) for n in range(0, 50, 7)])
    store([usage(now, 4000 + n) for n in range(4)])
    with session_scope() as session:
        session.execute(
            update(ProviderUsage)
            .where(ProviderUsage.created_at < now - dt.timedelta(days=1, hours=3))
            .where(ProviderUsage.id % 4 == 0)
            .values(status="failed", cost=Decimal("0.5"), response_time_ms=42)
        )
        session.execute(delete(User).where(User.id == owner))
    rollups_equal_rows()

    ranges = [
        # mid-hour start (raw edge), whole days, whole hours, the open hour raw
        (now - dt.timedelta(days=3, minutes=-17), now + dt.timedelta(minutes=1)),
        # both ends mid-hour, neither touching the open hour
        (this_hour - 50 * HOUR + MINUTE * 17, this_hour - 3 * HOUR - MINUTE * 19),
        # whole hours only
        (this_hour - 30 * HOUR, this_hour - 2 * HOUR),
    ]
    for start, end in ranges:
        base = f"from={iso(start)}&to={iso(end)}"
        expected = stored(start, end)
        for group_by in GROUPINGS:
            answer = client.get(f"/admin/usage?group_by={group_by}&{base}", headers=headers)
            assert answer.status_code == 200, answer.text
            assert summed(answer.json()["data"]) == expected, (group_by, start, end)
        for params, where in (
            ("provider=anthropic", {"provider_name": "anthropic"}),
            ("model=gpt-4&status=failed", {"model_name": "gpt-4", "status": "failed"}),
            ("status=cancelled", {"status": "cancelled"}),
        ):
            answer = client.get(f"/admin/usage?group_by=day,model&{base}&{params}", headers=headers)
            assert summed(answer.json()["data"]) == stored(start, end, **where), params
    # The reports above did read every kind of part: days, hours and raw rows.
    assert any(p.days for p in layouts) and all(p.hours for p in layouts)
    assert any(len(p.raw) == 2 for p in layouts)
    assert any(not p.raw for p in layouts)


def test_groups_from_rollups_match_the_groups_from_rows(client, layouts, monkeypatch):
    """Same groups, counts, tokens, costs and rates; percentiles within one bucket (9.05%)."""
    headers, _ = make_admin(client)
    now = db_now()
    store([usage(now - n * dt.timedelta(minutes=7), n) for n in range(1, 700)])
    start, end = iso(now - dt.timedelta(days=3, minutes=-23)), iso(now)
    for group_by in ("provider,day", "model,hour"):
        url = f"/admin/usage?group_by={group_by}&from={start}&to={end}"
        from_rollups = client.get(url, headers=headers).json()["data"]
        with monkeypatch.context() as exact:
            exact.setattr(usage_analytics, "exact_percentile_rows", 10**9)
            from_rows = client.get(url, headers=headers).json()["data"]
        assert len(from_rollups) == len(from_rows) > 10
        for estimated, exact_group in zip(from_rollups, from_rows, strict=True):
            for name in SAME_EITHER_WAY:
                assert estimated[name] == exact_group[name], name
            for name in PERCENTILES:
                value, true = estimated[name], exact_group[name]
                if true is None:
                    assert value is None
                    continue
                assert true / 2 ** (1 / 8) <= value <= true * 2 ** (1 / 8), (name, value, true)
    assert len(layouts) == 2


def test_small_latencies_are_exact_from_rollups(client, layouts):
    headers, _ = make_admin(client)
    now = db_now()
    # 1..11 ms: one integer per bucket, so the rollup's percentiles are percentile_cont's.
    store([usage(now - dt.timedelta(hours=5), n, response_time_ms=1 + n % 11) for n in range(40)])
    data = client.get("/admin/usage?group_by=provider", headers=headers).json()["data"]
    with session_scope() as session:
        exact = dict(
            session.execute(
                text(
                    "SELECT provider_name, percentile_cont(0.95) WITHIN GROUP"
                    " (ORDER BY response_time_ms) FROM provider_usage GROUP BY 1"
                )
            ).all()
        )
    assert {g["provider"]: g["response_time_ms_p95"] for g in data} == exact
    assert layouts


def test_rollups_stay_exact_with_concurrent_writers(client):
    """Writers insert rows into the very hours being rolled up, and some into hours already
    rolled up, while the roll-forward runs: afterwards every cell equals its rows."""
    now = db_now()
    base = floor_hour(now) - 4 * HOUR
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                at = base + dt.timedelta(seconds=rng.randrange(8 * 3600))
                store([usage(at, rng.randrange(10_000)) for _ in range(rng.randrange(1, 4))])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    try:
        engine = get_engine()
        for step in range(1, 9):  # the watermark walks through the writers' hours
            with engine.begin() as conn:
                conn.execute(
                    text("SELECT usage_rollup_advance(:until)"), {"until": base + step * HOUR}
                )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert state()[0] == base + 8 * HOUR
    with session_scope() as session:
        assert session.scalar(text("SELECT sum(requests) FROM usage_rollup_hourly")) > 20
    rollups_equal_rows()


def test_repeatable_read_writer_cannot_slip_a_row_past_a_roll_forward(client):
    """A REPEATABLE READ writer whose snapshot predates a roll-forward would see the old
    watermark and skip the cells its row belongs to; it fails to serialize instead."""
    base = floor_hour(db_now()) - 6 * HOUR
    store([usage(base - HOUR, 1)])
    engine = get_engine()
    with engine.begin() as conn:
        conn.execute(text("SELECT usage_rollup_advance(:until)"), {"until": base})
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as writer:
        writer.begin()
        writer.execute(select(func.count()).select_from(User))  # its snapshot is taken here
        with engine.begin() as conn:
            conn.execute(text("SELECT usage_rollup_advance(:until)"), {"until": base + 3 * HOUR})
        with pytest.raises(OperationalError) as refused:
            writer.execute(insert(ProviderUsage), [usage(base + HOUR, 2)])
        assert refused.value.orig.pgcode == "40001"  # serialization_failure: retry
        writer.rollback()
        writer.begin()  # the retry, with a fresh snapshot, goes into the rolled-up cells
        writer.execute(insert(ProviderUsage), [usage(base + HOUR, 2)])
        writer.commit()
    rollups_equal_rows()
    with session_scope() as session:
        assert session.scalar(text("SELECT sum(requests) FROM usage_rollup_hourly")) == 2


def test_roll_forward_gives_way_to_a_writer_holding_the_table(client):
    headers, _ = make_admin(client)
    now = db_now()
    store([usage(now - dt.timedelta(hours=h), h) for h in range(2, 40)])
    engine = get_engine()
    with engine.connect() as writer:
        writer.begin()  # a transaction that has written a usage row and not committed yet
        writer.execute(insert(ProviderUsage), [usage(now, 1)])
        rollup.advance(engine, budget_seconds=5)  # gives up after its 200 ms lock timeout
        assert state() == (None, None)
        # The report does not wait either: it reads the rows, all of them.
        answer = client.get("/admin/usage?group_by=day", headers=headers)
        assert summed(answer.json()["data"]) == stored(now - dt.timedelta(days=30), now)
        writer.rollback()
    rollup.advance(engine)
    assert state()[0] is not None
    rollups_equal_rows()


def test_truncate_empties_the_rollups(client):
    now = db_now()
    store([usage(now - dt.timedelta(hours=h), h) for h in range(2, 30)])
    rollup.advance(get_engine())
    assert state()[0] is not None
    with session_scope() as session:
        session.execute(text("TRUNCATE provider_usage"))
    assert state() == (None, None)
    with session_scope() as session:
        assert session.scalar(text("SELECT count(*) FROM usage_rollup_hourly")) == 0
        assert session.scalar(text("SELECT count(*) FROM usage_rollup_daily")) == 0


def usage_table_at_0006(row: dict) -> sa.TableClause:
    """provider_usage with only the columns a row names: the model has columns that later
    migrations add, whose defaults an insert through it would send."""
    return sa.table("provider_usage", *(sa.column(name) for name in row))


def test_migration_rolls_up_the_existing_rows_and_downgrades(pg_url):  # noqa: F811
    upgrade(pg_url, "0006_provider_catalog")
    engine = make_engine(pg_url, pool_size=1, max_overflow=1)
    try:
        with engine.begin() as conn:
            now = conn.scalar(select(func.now()))
            rows = [usage(now - n * dt.timedelta(minutes=23), n) for n in range(300)]
            conn.execute(insert(usage_table_at_0006(rows[0])), rows)
        upgrade(pg_url, "0007_usage_rollup")
        hours_before, days_before = state(engine)
        assert hours_before is not None and hours_before > now - 2 * HOUR
        with engine.connect() as conn:
            rolled = conn.scalar(text("SELECT sum(requests) FROM usage_rollup_hourly"))
        assert rolled == sum(1 for r in rows if r["created_at"] < hours_before)
        rollups_equal_rows(engine)

        downgrade(pg_url, "0006_provider_catalog")
        with engine.begin() as conn:
            # No trigger left behind.
            conn.execute(insert(usage_table_at_0006(rows[0])), [usage(now, 1)])
            functions = conn.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'usage\\_%'")
            )
        assert functions == 0
        assert not {"usage_rollup_hourly", "usage_rollup_daily", "usage_rollup_state"} & set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_sqlite_reports_read_the_rows(tmp_path):
    """The dev server's SQLite has the rollup tables (empty) and answers from the rows."""
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        now = dt.datetime.now(dt.UTC)
        with Session(engine) as session, session.begin():
            session.execute(insert(ProviderUsage), [usage(now - n * HOUR, n) for n in range(1, 50)])
        with Session(engine) as session:
            query = build_query(start=None, end=None, group_by=("provider", "day"), now=now)
            groups = usage_analytics.report(session, query)
            expected = session.execute(select(func.count(), func.sum(ProviderUsage.cost))).one()
        assert sum(g.requests for g in groups) == expected[0] == 49
        assert sum(g.cost or 0 for g in groups) == expected[1]
        assert all(g.response_time_ms_p50 is not None for g in groups)
    finally:
        engine.dispose()
