"""The routing options a chat or a message may carry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=100)


class RoutingOptions(BaseModel):
    """Stored as JSON on chats; a message's options override its chat's, field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fallbacks: list[TargetIn] | None = Field(
        default=None,
        max_length=10,
        description="Targets to try, in order, when the chosen one fails; replaces the "
        "model's configured chain",
    )
    cache: bool | None = Field(
        default=None, description="Serve an identical earlier request from the response cache"
    )
    capabilities: list[str] | None = Field(
        default=None,
        max_length=20,
        description="auto:cheapest only: capabilities the model must have "
        "(provider_models.capabilities)",
    )
    min_context_tokens: int | None = Field(
        default=None, ge=1, le=10_000_000, description="auto:cheapest only: context length"
    )

    def over(self, base: RoutingOptions | None) -> RoutingOptions:
        if base is None:
            return self
        mine = self.model_dump(exclude_none=True)
        return base.model_copy(update=mine)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RoutingOptions | None:
        return cls.model_validate(data) if data else None

    def as_json(self) -> dict[str, Any] | None:
        data = self.model_dump(exclude_none=True, mode="json")
        return data or None
