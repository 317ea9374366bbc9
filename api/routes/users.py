from __future__ import annotations

from fastapi import APIRouter

from api.deps import AuthDep, current_user
from api.schemas.auth import UserRead
from api.schemas.responses import AUTHENTICATED

router = APIRouter(prefix="/users", tags=["users"], responses=AUTHENTICATED)


@router.get("/me", response_model=UserRead)
async def read_me(auth: AuthDep) -> object:
    return await auth.run(current_user)
