from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser
from api.schemas.auth import UserRead

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserRead)
def read_me(user: CurrentUser) -> object:
    return user
