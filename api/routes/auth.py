from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import AuthDep, SettingsDep, run_in_session
from api.schemas.auth import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, Token, UserRead, UserRegister
from api.schemas.common import ErrorOut
from api.schemas.responses import (
    AUTHENTICATED,
    BODY_ERRORS,
    DATABASE_UNAVAILABLE,
    conflict,
    not_found,
)
from shared.accounts.rate_limit import auth_rate_limiter
from shared.accounts.service import account_service
from shared.security import create_access_token
from shared.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"], responses=DATABASE_UNAVAILABLE)

RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": "Too many attempts from this client or for this email; see Retry-After",
    }
}


async def _limit_attempts(request: Request, settings: Settings, action: str, email: str) -> None:
    await auth_rate_limiter.check(
        request.app.state.redis,
        action=action,
        client_ip=request.client.host if request.client else None,
        email=email,
        per_ip=settings.AUTH_RATE_LIMIT_PER_IP_PER_MINUTE,
        per_account=settings.AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE,
    )


@router.post(
    "/register",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=RATE_LIMITED | BODY_ERRORS | conflict("A user with this email already exists"),
)
async def register(body: UserRegister, request: Request, settings: SettingsDep) -> object:
    await _limit_attempts(request, settings, "register", body.email)
    return await run_in_session(account_service.register, email=body.email, password=body.password)


@router.post(
    "/token",
    response_model=Token,
    responses=RATE_LIMITED
    | BODY_ERRORS
    | {401: {"model": ErrorOut, "description": "Incorrect email or password"}},
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    settings: SettingsDep,
) -> Token:
    """OAuth2 password flow: `username` is the email."""
    await _limit_attempts(request, settings, "token", form.username)
    user = await run_in_session(
        account_service.authenticate, email=form.username, password=form.password
    )
    token = create_access_token(user.id, settings.secret_key, settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    return Token(access_token=token)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=AUTHENTICATED | BODY_ERRORS,
)
async def create_api_key(body: ApiKeyCreate, auth: AuthDep) -> ApiKeyCreated:
    row, key = await auth.run(account_service.create_api_key, name=body.name)
    return ApiKeyCreated(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        key=key,
    )


@router.get("/api-keys", response_model=list[ApiKeyRead], responses=AUTHENTICATED)
async def list_api_keys(auth: AuthDep) -> object:
    return await auth.run(account_service.list_api_keys)


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTHENTICATED | not_found("API key"),
)
async def revoke_api_key(key_id: uuid.UUID, auth: AuthDep) -> None:
    await auth.run(account_service.revoke_api_key, key_id)
