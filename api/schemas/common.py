from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from shared.pricing import format_cost
from shared.providers.base import MAX_STOP_SEQUENCES

MAX_STOP_CHARS = 200


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a valid integer")
    return value  # lax int validation then refuses a fraction


# Request fields whose JSON type the schema promises. Lax pydantic would take `0` or `0.0` for a
# boolean and `false` for a number (FastAPI validates the decoded JSON as Python values, where
# bool is an int): a client's type mistake would silently become a setting.
StrictBool = Annotated[bool, Field(strict=True)]
# For `Annotated[int, Field(ge=..., le=...), JSON_INTEGER]`: a JSON Schema integer, `100` or
# `100.0`, never `true` or `"100"` (a strict int would refuse `100.0`, which the schema allows).
# Bounds go before it: after it, pydantic documents them as `ge`/`le`, not `minimum`/`maximum`.
JSON_INTEGER = BeforeValidator(_json_integer)
# Strict float still takes JSON integers (`1` for 1.0), but no longer booleans.
StrictFloat = Annotated[float, Field(strict=True)]

# Stop sequences, as OpenAI's and Anthropic's APIs bound them. An empty one would end every
# reply before its first character.
StopSequence = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
StopSequences = Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES)]

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
