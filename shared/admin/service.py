"""Admin users: listing with usage totals, and changing the admin and active flags."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.errors import AppError, Conflict, NotFound
from shared.models import ProviderUsage, User


class Forbidden(AppError):
    status_code = 403


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal | None = None


@dataclass(slots=True)
class AdminUserView:
    user: User
    usage: UsageTotals


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("Admins only")


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AdminService:
    def list_users(
        self, session: Session, admin: User, *, limit: int, offset: int, q: str | None = None
    ) -> tuple[list[AdminUserView], int]:
        """A page of users by email, each with lifetime usage totals.

        The totals are summed for the page's users only (idx_provider_usage_user), so the
        cost of a page does not grow with the number of users or of usage rows elsewhere.
        """
        require_admin(admin)
        conditions = []
        if q:
            pattern = f"%{_escape_like(q.strip().lower())}%"
            conditions.append(User.email.like(pattern, escape="\\"))
        count = session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0
        users = list(
            session.scalars(
                select(User).where(*conditions).order_by(User.email).limit(limit).offset(offset)
            )
        )
        totals = self._totals(session, [u.id for u in users])
        return [AdminUserView(u, totals.get(u.id, UsageTotals())) for u in users], count

    def update_user(
        self,
        session: Session,
        admin: User,
        user_id: uuid.UUID,
        *,
        is_admin: bool | None = None,
        is_active: bool | None = None,
    ) -> AdminUserView:
        require_admin(admin)
        target = session.get(User, user_id)
        if target is None:
            raise NotFound("User not found")
        if target.id == admin.id and (is_admin is False or is_active is False):
            # Otherwise the last admin could lock everyone out of the admin API.
            raise Conflict("You cannot remove your own admin flag or disable yourself")
        if is_admin is not None:
            target.is_admin = is_admin
        if is_active is not None:
            target.is_active = is_active
        session.flush()
        return AdminUserView(
            target, self._totals(session, [target.id]).get(target.id, UsageTotals())
        )

    def _totals(self, session: Session, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, UsageTotals]:
        if not user_ids:
            return {}
        prompt = func.coalesce(func.sum(ProviderUsage.prompt_tokens), 0)
        completion = func.coalesce(func.sum(ProviderUsage.completion_tokens), 0)
        rows = session.execute(
            select(
                ProviderUsage.user_id,
                func.count(),
                prompt,
                completion,
                func.sum(ProviderUsage.cost),
            )
            .where(ProviderUsage.user_id.in_(user_ids))
            .group_by(ProviderUsage.user_id)
        )
        return {
            user_id: UsageTotals(
                requests=int(requests),
                prompt_tokens=int(p),
                completion_tokens=int(c),
                total_tokens=int(p) + int(c),
                cost=Decimal(cost) if cost is not None else None,
            )
            for user_id, requests, p, c, cost in rows
        }


admin_service = AdminService()
