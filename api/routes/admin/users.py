from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PageDep
from api.routes.admin.common import AdminDep
from api.schemas.admin import AdminUserList, AdminUserRead, AdminUserUpdate
from api.schemas.responses import BODY_ERRORS, conflict, not_found
from shared.admin.service import AdminUserView, admin_service

router = APIRouter(prefix="/users", tags=["admin"])


def _read(view: AdminUserView) -> AdminUserRead:
    user = view.user
    return AdminUserRead.model_validate(
        {
            "id": user.id,
            "email": user.email,
            "is_admin": user.is_admin,
            "is_active": user.is_active,
            "created_at": user.created_at,
            "usage": view.usage,
        },
        from_attributes=True,
    )


@router.get("", response_model=AdminUserList)
async def list_users(
    auth: AdminDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=320, description="Part of the email")] = None,
) -> AdminUserList:
    """Users by email, each with lifetime usage totals (requests, tokens, cost)."""
    views, count = await auth.run(
        admin_service.list_users, limit=page.limit, offset=page.offset, q=q
    )
    return AdminUserList(data=[_read(v) for v in views], count=count)


@router.patch(
    "/{user_id}",
    response_model=AdminUserRead,
    responses=BODY_ERRORS
    | not_found("user")
    | conflict("An admin removing their own admin flag or disabling themselves"),
)
async def update_user(user_id: uuid.UUID, body: AdminUserUpdate, auth: AdminDep) -> AdminUserRead:
    """Make a user an admin or not, enable or disable them (a disabled user's tokens and API
    keys stop working at once)."""
    view = await auth.run(
        admin_service.update_user, user_id, is_admin=body.is_admin, is_active=body.is_active
    )
    return _read(view)
