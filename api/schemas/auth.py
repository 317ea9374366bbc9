from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import EmailStr, Field

from api.schemas.common import ReadModel, StrictModel


class UserRegister(StrictModel):
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)


class UserRead(ReadModel):
    id: uuid.UUID
    email: str
    is_admin: bool
    created_at: datetime


class Token(ReadModel):
    access_token: str
    token_type: str = "bearer"


class ApiKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyRead(ReadModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="When the key last authenticated a request, to the minute"
    )


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown once: store it now.")
