"""Usage analytics across every user, for admins."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.admin.service import require_admin
from shared.models import User
from shared.usage.analytics import UsageGroup, UsageQuery, usage_analytics


def admin_usage_report(session: Session, admin: User, query: UsageQuery) -> list[UsageGroup]:
    require_admin(admin)
    return usage_analytics.report(session, query)
