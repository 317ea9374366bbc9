from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, model_validator

from shared.pricing import format_cost

# Costs keep 12 decimals; shown in plain notation ("0.000000035", never "3.5E-8").
Cost = Annotated[Decimal, PlainSerializer(format_cost, return_type=str, when_used="json")]


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(v) for v in value)
    return False


class StrictModel(BaseModel):
    """Request bodies: unknown fields are rejected, so nothing can be smuggled in."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL: refuse it here as bad input, not later as a 500.
        if _contains_nul(data):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return data


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    error: str
    detail: str | list[dict[str, object]]
