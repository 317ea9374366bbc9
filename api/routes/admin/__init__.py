"""The admin API: admins only (401 without credentials, 403 for other users)."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes.admin import providers, queues, routing, usage, users
from api.routes.admin.common import FORBIDDEN
from api.schemas.responses import AUTHENTICATED

router = APIRouter(prefix="/admin", responses=AUTHENTICATED | FORBIDDEN)
router.include_router(users.router)
router.include_router(usage.router)
router.include_router(providers.router)
router.include_router(queues.router)
router.include_router(routing.router)

__all__ = ["router"]
