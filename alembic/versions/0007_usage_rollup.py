"""Usage rollups: provider_usage summed per UTC hour and per UTC day, kept exact.

Revision ID: 0007_usage_rollup
Revises: 0006_provider_catalog
Create Date: 2026-12-02

Analytics over long ranges read summaries instead of every usage row (docs/benchmarks.md: a
30-day report scanned 333,000 rows in 2.2 s).

* usage_rollup_hourly and usage_rollup_daily: one cell per period, provider, model and status
  (not per user: that would be as large as provider_usage; per-user questions keep reading
  provider_usage through its user index). A cell holds request and priced-request counts,
  token sums, the exact NUMERIC cost sum and two sparse latency histograms (response time and
  time to first token, log-scale buckets of 2^(1/8), about 9%, see usage_latency_bucket).
  The daily table exists because merging the histograms of 720 hourly cells per series is the
  slow part of a month's report (measured: 80 ms a histogram for 30 days of hourly cells of
  the benchmark, against 15 ms for daily cells).
* usage_rollup_state: one row, the watermarks: every hour before hours_before is in the hourly
  table, every day before days_before in the daily table. Queries take later rows, and the
  part of a range that is not whole hours, from provider_usage.

How the rollups stay equal to provider_usage, without a lock per finished generation:

* usage_rollup_advance(until) rolls the closed hours from the watermark up to `until` into new
  cells (and then the closed days) and moves the watermarks, in one transaction under a SHARE
  lock on provider_usage. That lock waits for every transaction writing usage rows to commit
  and holds new writers until it commits (milliseconds for an hour's rows), so no usage row can
  commit into an hour while it is being rolled up: there is no "late commit" to lose, whatever
  the margin. The API calls it lazily before a report, for the hours that closed at least 5
  minutes ago (the margin keeps rows stamped by a worker whose clock runs a little behind out
  of the slower path below), in batches, giving up at once if another process is doing it.
* Statement-level triggers on provider_usage handle every change below a watermark: a row
  inserted with an old created_at (a skewed clock, an import), rows deleted (a user deleted,
  with their usage by ON DELETE CASCADE), an update of a summed column. They add the change
  (+1 per new row, -1 per old one) to the cells, in the same transaction as the change, so
  rollups and rows can never be seen disagreeing. A normal insert (created_at after the
  watermark) costs one read of the state row (10-18 us of server time, docs/benchmarks.md);
  only these rare changes take row locks, on past cells no worker is writing.
* TRUNCATE provider_usage empties the rollups too. A bulk load with triggers off
  (session_replication_role = replica) bypasses them: rebuild after it (docs/admin.md).

On SQLite the tables are created empty and nothing maintains them: analytics there read
provider_usage (the dev server's volumes are small).

Hand-written on purpose: do not import shared.models here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_usage_rollup"
down_revision: str | Sequence[str] | None = "0006_provider_catalog"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = sa.JSON().with_variant(postgresql.ARRAY(sa.SmallInteger()), "postgresql")
COUNTS = sa.JSON().with_variant(postgresql.ARRAY(sa.Integer()), "postgresql")
MARGIN = "5 minutes"
# pg_try_advisory_xact_lock key of usage_rollup_advance: one roll-forward at a time.
ADVANCE_LOCK = 7_100_705


def _thresholds() -> list[int]:
    """ceil(2^(k/8)) for k = 0..247, exactly (integers only): an integer ms is at least
    2^(k/8) if and only if it is at least this. 2^(248/8) = 2^31 is past any integer."""
    out = []
    for k in range(248):
        m = max(1, int(2 ** (k / 8)) - 1)
        while m**8 < 2**k:
            m += 1
        out.append(m)
    return out


BUCKET_FUNCTION = f"""
CREATE FUNCTION usage_latency_bucket(ms integer) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- Bucket b >= 1 holds [2^((b-1)/8), 2^(b/8)) ms, bucket 0 holds 0 (and below); b is
    -- floor(8 * log2(ms)) + 1, counted exactly against integer thresholds (no float rounding).
    SELECT width_bucket(ms, '{{{",".join(map(str, _thresholds()))}}}'::integer[])::smallint
$$
"""

HIST_ADD_FUNCTION = """
CREATE FUNCTION usage_hist_add(
    a_buckets smallint[], a_counts integer[], b_buckets smallint[], b_counts integer[],
    OUT buckets smallint[], OUT counts integer[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(x.b ORDER BY x.b), '{}'), coalesce(array_agg(x.n ORDER BY x.b), '{}')
    FROM (
        SELECT u.b, sum(u.n)::integer AS n
        FROM (SELECT * FROM unnest(a_buckets, a_counts)
              UNION ALL SELECT * FROM unnest(b_buckets, b_counts)) AS u(b, n)
        GROUP BY u.b
        HAVING sum(u.n) <> 0
    ) AS x
$$
"""

# The statement adding signed usage rows (`source`: sign, then provider_usage's columns) with
# $1 <= created_at < $2 to the cells of one period; it answers how many cells it emptied.
# Shared by the roll-forward (sign +1, fresh cells) and the triggers (existing cells: counts
# add up, histograms merge).
APPLY_SQL_FUNCTION = r"""
CREATE FUNCTION usage_rollup_apply_sql(period text, source text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
    tbl text := CASE period WHEN 'hour' THEN 'usage_rollup_hourly' ELSE 'usage_rollup_daily' END;
    expr text := CASE period
        WHEN 'hour' THEN $e$date_trunc('hour', r.created_at, 'UTC')$e$
        ELSE $e$(r.created_at AT TIME ZONE 'UTC')::date$e$ END;
BEGIN
    IF period NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION 'usage_rollup_apply_sql: unknown period %', period;
    END IF;
    RETURN format($sql$
        WITH up AS (WITH s AS (
            SELECT r.sign, %4$s AS k, r.provider_name, r.model_name,
                   coalesce(r.status, '') AS status, r.prompt_tokens, r.completion_tokens,
                   r.cost, usage_latency_bucket(r.response_time_ms) AS rb,
                   usage_latency_bucket(r.time_to_first_token_ms) AS tb
            FROM (%3$s) AS r
            WHERE r.created_at >= $1 AND r.created_at < $2
        ), cells AS (
            SELECT k, provider_name, model_name, status,
                   sum(sign)::integer AS requests,
                   coalesce(sum(sign) FILTER (WHERE cost IS NOT NULL), 0)::integer AS priced,
                   coalesce(sum(sign * prompt_tokens), 0)::bigint AS prompt_tokens,
                   coalesce(sum(sign * completion_tokens), 0)::bigint AS completion_tokens,
                   coalesce(sum(sign * cost), 0) AS cost
            FROM s GROUP BY 1, 2, 3, 4
        ), rt AS (
            SELECT k, provider_name, model_name, status,
                   array_agg(b ORDER BY b) AS b, array_agg(n ORDER BY b) AS n
            FROM (SELECT k, provider_name, model_name, status, rb AS b, sum(sign)::integer AS n
                  FROM s WHERE rb IS NOT NULL GROUP BY 1, 2, 3, 4, 5
                  HAVING sum(sign) <> 0) AS h
            GROUP BY 1, 2, 3, 4
        ), tt AS (
            SELECT k, provider_name, model_name, status,
                   array_agg(b ORDER BY b) AS b, array_agg(n ORDER BY b) AS n
            FROM (SELECT k, provider_name, model_name, status, tb AS b, sum(sign)::integer AS n
                  FROM s WHERE tb IS NOT NULL GROUP BY 1, 2, 3, 4, 5
                  HAVING sum(sign) <> 0) AS h
            GROUP BY 1, 2, 3, 4
        )
        INSERT INTO %1$I AS t (%2$I, provider_name, model_name, status, requests,
            priced_requests, prompt_tokens, completion_tokens, cost, response_ms_buckets,
            response_ms_counts, ttft_ms_buckets, ttft_ms_counts)
        SELECT c.k, c.provider_name, c.model_name, c.status, c.requests, c.priced,
               c.prompt_tokens, c.completion_tokens, c.cost,
               coalesce(rt.b, '{}'), coalesce(rt.n, '{}'),
               coalesce(tt.b, '{}'), coalesce(tt.n, '{}')
        FROM cells AS c
        LEFT JOIN rt USING (k, provider_name, model_name, status)
        LEFT JOIN tt USING (k, provider_name, model_name, status)
        -- Cells are locked in this order: concurrent changes never wait on each other in a cycle.
        ORDER BY c.k, c.provider_name, c.model_name, c.status
        ON CONFLICT (%2$I, provider_name, model_name, status) DO UPDATE SET
            requests = t.requests + EXCLUDED.requests,
            priced_requests = t.priced_requests + EXCLUDED.priced_requests,
            prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
            cost = t.cost + EXCLUDED.cost,
            (response_ms_buckets, response_ms_counts) = (
                SELECT * FROM usage_hist_add(t.response_ms_buckets, t.response_ms_counts,
                    EXCLUDED.response_ms_buckets, EXCLUDED.response_ms_counts)),
            (ttft_ms_buckets, ttft_ms_counts) = (
                SELECT * FROM usage_hist_add(t.ttft_ms_buckets, t.ttft_ms_counts,
                    EXCLUDED.ttft_ms_buckets, EXCLUDED.ttft_ms_counts))
        RETURNING t.requests)
        -- How many cells this emptied (their rows all deleted): the caller removes them.
        SELECT count(*) FILTER (WHERE requests = 0) FROM up
    $sql$, tbl, period, source, expr);
END
$f$
"""

ADVANCE_FUNCTION = f"""
CREATE FUNCTION usage_rollup_advance(p_until timestamptz, p_max_hours integer DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $f$
-- Rolls the hours before `p_until` (at most p_max_hours of them from the watermark) and the
-- days they complete into the rollups. True when caught up with p_until, NULL when another
-- transaction is rolling up right now.
DECLARE
    v_target timestamptz := date_trunc('hour', p_until, 'UTC');
    v_hours timestamptz;
    v_days date;
    v_from timestamptz;
    v_to timestamptz;
    v_first timestamptz;
    v_day_from date;
    v_day_to date;
    v_src text := 'SELECT 1 AS sign, u.* FROM provider_usage AS u';
BEGIN
    IF NOT pg_try_advisory_xact_lock({ADVANCE_LOCK}) THEN
        RETURN NULL;
    END IF;
    -- Waits for the transactions writing usage rows and holds new ones until commit: every
    -- row of the hours rolled up here is committed and visible to the statements below.
    LOCK TABLE provider_usage IN SHARE MODE;
    SELECT hours_before, days_before INTO v_hours, v_days FROM usage_rollup_state WHERE id = 1;
    IF NOT FOUND THEN
        INSERT INTO usage_rollup_state (id) VALUES (1);
    END IF;
    IF v_hours IS NULL OR v_days IS NULL THEN
        SELECT min(created_at) INTO v_first FROM provider_usage;
        v_first := coalesce(v_first, p_until);
    END IF;
    v_from := coalesce(v_hours, date_trunc('hour', v_first, 'UTC'));
    -- Hours without rows need no work: start at the first row at or after the watermark.
    SELECT greatest(v_from, least(v_target, date_trunc('hour', min(created_at), 'UTC')))
        INTO v_from FROM provider_usage WHERE created_at >= v_from AND created_at < v_target;
    v_to := v_target;
    IF p_max_hours IS NOT NULL THEN
        v_to := least(v_to, v_from + make_interval(hours => p_max_hours));
    END IF;
    IF v_to > v_from THEN
        EXECUTE usage_rollup_apply_sql('hour', v_src) USING v_from, v_to;
    END IF;
    v_to := greatest(v_from, v_to);
    -- The days wholly before the hourly watermark are complete: roll them up too.
    v_day_to := (v_to AT TIME ZONE 'UTC')::date;
    v_day_from := coalesce(v_days, (v_first AT TIME ZONE 'UTC')::date);
    IF v_day_to > v_day_from THEN
        EXECUTE usage_rollup_apply_sql('day', v_src)
            USING v_day_from::timestamp AT TIME ZONE 'UTC', v_day_to::timestamp AT TIME ZONE 'UTC';
    END IF;
    UPDATE usage_rollup_state
        SET hours_before = v_to, days_before = greatest(v_day_from, v_day_to) WHERE id = 1;
    RETURN v_to >= v_target;
END
$f$
"""

# Columns a report sums or groups on: an update touching none of them (a chat deleted: its
# usage rows' chat_id set to NULL) changes no cell.
SUMMED = (
    "created_at, provider_name, model_name, status, prompt_tokens, completion_tokens, cost,"
    " response_time_ms, time_to_first_token_ms"
)

TRACK_FUNCTION = f"""
CREATE FUNCTION usage_rollup_track() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE
    w_hours timestamptz;
    w_days date;
    src text;
    emptied bigint;
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        -- A fresh snapshot: a roll-forward that committed while this statement waited for
        -- its lock is seen here, so the rows it could not see are added below.
        SELECT hours_before, days_before INTO w_hours, w_days
            FROM usage_rollup_state WHERE id = 1;
    ELSE
        -- The transaction's older snapshot might predate a roll-forward; locking the row makes
        -- that case a serialization failure (retried by the caller) instead of a lost row.
        SELECT hours_before, days_before INTO w_hours, w_days
            FROM usage_rollup_state WHERE id = 1 FOR SHARE;
    END IF;
    IF w_hours IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM new_rows WHERE created_at < w_hours) THEN
            RETURN NULL;
        END IF;
        src := 'SELECT 1 AS sign, n.* FROM new_rows AS n';
    ELSIF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM old_rows WHERE created_at < w_hours) THEN
            RETURN NULL;
        END IF;
        src := 'SELECT -1 AS sign, o.* FROM old_rows AS o';
    ELSE
        IF NOT EXISTS (SELECT 1 FROM old_rows WHERE created_at < w_hours)
           AND NOT EXISTS (SELECT 1 FROM new_rows WHERE created_at < w_hours) THEN
            RETURN NULL;
        END IF;
        IF NOT EXISTS (
            (SELECT {SUMMED} FROM old_rows EXCEPT ALL SELECT {SUMMED} FROM new_rows)
            UNION ALL
            (SELECT {SUMMED} FROM new_rows EXCEPT ALL SELECT {SUMMED} FROM old_rows)
        ) THEN
            RETURN NULL;
        END IF;
        src := 'SELECT -1 AS sign, o.* FROM old_rows AS o UNION ALL '
            || 'SELECT 1 AS sign, n.* FROM new_rows AS n';
    END IF;
    EXECUTE usage_rollup_apply_sql('hour', src) INTO emptied
        USING '-infinity'::timestamptz, w_hours;
    IF emptied > 0 THEN
        DELETE FROM usage_rollup_hourly WHERE requests = 0;
    END IF;
    IF w_days IS NOT NULL THEN
        EXECUTE usage_rollup_apply_sql('day', src) INTO emptied
            USING '-infinity'::timestamptz, w_days::timestamp AT TIME ZONE 'UTC';
        IF emptied > 0 THEN
            DELETE FROM usage_rollup_daily WHERE requests = 0;
        END IF;
    END IF;
    RETURN NULL;
END
$f$
"""

RESET_FUNCTION = """
CREATE FUNCTION usage_rollup_reset() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    DELETE FROM usage_rollup_hourly;
    DELETE FROM usage_rollup_daily;
    DELETE FROM usage_rollup_state;
    RETURN NULL;
END
$f$
"""

TRIGGERS = (
    "CREATE TRIGGER usage_rollup_on_insert AFTER INSERT ON provider_usage"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_track()",
    "CREATE TRIGGER usage_rollup_on_update AFTER UPDATE ON provider_usage"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_track()",
    "CREATE TRIGGER usage_rollup_on_delete AFTER DELETE ON provider_usage"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_track()",
    "CREATE TRIGGER usage_rollup_on_truncate AFTER TRUNCATE ON provider_usage"
    " FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_reset()",
)
FUNCTIONS = (
    "usage_rollup_reset()",
    "usage_rollup_track()",
    "usage_rollup_advance(timestamptz, integer)",
    "usage_rollup_apply_sql(text, text)",
    "usage_hist_add(smallint[], integer[], smallint[], integer[])",
    "usage_latency_bucket(integer)",
)


def _cell_columns() -> list[sa.Column]:
    return [
        sa.Column("provider_name", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("priced_requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Numeric(30, 12), nullable=False),
        sa.Column("response_ms_buckets", BUCKETS, nullable=False),
        sa.Column("response_ms_counts", COUNTS, nullable=False),
        sa.Column("ttft_ms_buckets", BUCKETS, nullable=False),
        sa.Column("ttft_ms_counts", COUNTS, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_rollup_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        *_cell_columns(),
        sa.PrimaryKeyConstraint(
            "hour", "provider_name", "model_name", "status", name="pk_usage_rollup_hourly"
        ),
    )
    op.create_table(
        "usage_rollup_daily",
        sa.Column("day", sa.Date(), nullable=False),
        *_cell_columns(),
        sa.PrimaryKeyConstraint(
            "day", "provider_name", "model_name", "status", name="pk_usage_rollup_daily"
        ),
    )
    op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hours_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("days_before", sa.Date(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_usage_rollup_state_one_row")),
        sa.PrimaryKeyConstraint("id", name="pk_usage_rollup_state"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in (
        BUCKET_FUNCTION,
        HIST_ADD_FUNCTION,
        APPLY_SQL_FUNCTION,
        ADVANCE_FUNCTION,
        TRACK_FUNCTION,
        RESET_FUNCTION,
        *TRIGGERS,
    ):
        op.execute(sa.text(statement))
    # The existing rows, up to the hours closed MARGIN ago (one pass: the migration may wait).
    op.execute(sa.text(f"SELECT usage_rollup_advance(now() - interval '{MARGIN}')"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "update", "delete", "truncate"):
            op.execute(sa.text(f"DROP TRIGGER usage_rollup_on_{name} ON provider_usage"))
        for signature in FUNCTIONS:
            op.execute(sa.text(f"DROP FUNCTION {signature}"))
    op.drop_table("usage_rollup_state")
    op.drop_table("usage_rollup_daily")
    op.drop_table("usage_rollup_hourly")
