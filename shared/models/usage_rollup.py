"""Usage rollups: provider_usage summed per hour and per UTC day, for analytics over long ranges.

Maintained on PostgreSQL only, by the functions and triggers of migration 0007 (read its
docstring for how and why); on SQLite the tables exist, stay empty and are never read.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base

# Sums of NUMERIC(20, 12) costs: same scale, so every digit is kept; room for larger totals.
CostSum = Numeric(30, 12)
# A sparse latency histogram is two parallel arrays: bucket numbers and counts (see
# shared/usage/rollup.py for the buckets). SQLite never holds rollup rows, only the table.
Buckets = JSON().with_variant(ARRAY(SmallInteger), "postgresql")
Counts = JSON().with_variant(ARRAY(Integer), "postgresql")


class _RollupColumns:
    """One cell: the rows of one provider, model and status in the period.

    Failed and cancelled counts are the `requests` of the cells whose status says so; `status`
    is '' for a usage row without one. `priced_requests` counts rows with a cost, so a cell
    of unpriced rows reports no cost rather than zero.
    """

    provider_name: Mapped[str] = mapped_column(String(50))
    model_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    requests: Mapped[int] = mapped_column(Integer)
    priced_requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[Decimal] = mapped_column(CostSum)
    response_ms_buckets: Mapped[list[int]] = mapped_column(Buckets)
    response_ms_counts: Mapped[list[int]] = mapped_column(Counts)
    ttft_ms_buckets: Mapped[list[int]] = mapped_column(Buckets)
    ttft_ms_counts: Mapped[list[int]] = mapped_column(Counts)


class UsageRollupHourly(_RollupColumns, Base):
    __tablename__ = "usage_rollup_hourly"
    # The period first, so a date range is one range of the primary key's index.
    __table_args__ = (PrimaryKeyConstraint("hour", "provider_name", "model_name", "status"),)

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the UTC hour's start


class UsageRollupDaily(_RollupColumns, Base):
    __tablename__ = "usage_rollup_daily"
    __table_args__ = (PrimaryKeyConstraint("day", "provider_name", "model_name", "status"),)

    day: Mapped[date] = mapped_column(Date)  # UTC


class UsageRollupState(Base):
    """One row: how far the rollups reach. Every hour before `hours_before` is in the hourly
    table, every day before `days_before` in the daily one; no row means nothing is."""

    __tablename__ = "usage_rollup_state"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hours_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    days_before: Mapped[date | None] = mapped_column(Date)
