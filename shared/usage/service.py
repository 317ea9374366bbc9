"""Usage analytics: tokens and cost per provider, model and day, for one user."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from shared.models import ProviderUsage, User
from shared.usage.analytics import UsageGroup, UsageQuery, usage_analytics


@dataclass(slots=True)
class UsageBucket:
    day: dt.date
    provider: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal | None


class UsageService:
    def daily(self, session: Session, user: User, *, since: dt.date) -> list[UsageBucket]:
        day = cast(ProviderUsage.created_at, Date)
        rows = session.execute(
            select(
                day.label("day"),
                ProviderUsage.provider_name,
                ProviderUsage.model_name,
                func.count(),
                func.coalesce(func.sum(ProviderUsage.prompt_tokens), 0),
                func.coalesce(func.sum(ProviderUsage.completion_tokens), 0),
                func.sum(ProviderUsage.cost),
            )
            .where(ProviderUsage.user_id == user.id, ProviderUsage.created_at >= since)
            .group_by(day, ProviderUsage.provider_name, ProviderUsage.model_name)
            .order_by(day.desc(), ProviderUsage.provider_name, ProviderUsage.model_name)
        ).all()
        return [
            UsageBucket(
                day=row[0] if isinstance(row[0], dt.date) else dt.date.fromisoformat(row[0]),
                provider=row[1],
                model=row[2],
                requests=row[3],
                prompt_tokens=int(row[4]),
                completion_tokens=int(row[5]),
                total_tokens=int(row[4]) + int(row[5]),
                cost=Decimal(row[6]) if row[6] is not None else None,
            )
            for row in rows
        ]

    def analytics(self, session: Session, user: User, query: UsageQuery) -> list[UsageGroup]:
        """The admin analytics, restricted to this user's rows whatever the query says."""
        return usage_analytics.report(session, replace(query, user_id=user.id))


usage_service = UsageService()
