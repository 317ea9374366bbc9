"""Bodies and answers of /admin/providers. Keys are write-only: answers say whether one is set
and show its last four characters, never more."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, SecretStr

from api.schemas.common import JSON_INTEGER, Cost, StrictBool, StrictFloat, StrictModel

PROVIDER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,49}$"
# Any printable name without whitespace: "llama3.1:8b", "meta-llama/Llama-3-8B", "gpt-4o".
MODEL_NAME_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"

ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=MODEL_NAME_PATTERN)]
DisplayName = Annotated[str, Field(min_length=1, max_length=100)]
# USD per 1,000 tokens; provider_models keeps 6 decimals and 4 integer digits.
Price = Annotated[Decimal, Field(ge=0, le=Decimal("9999.999999"), max_digits=10, decimal_places=6)]
MaxTokens = Annotated[int, Field(gt=0, le=10_000_000), JSON_INTEGER]
ContextLength = Annotated[int, Field(gt=0, le=2_000_000_000), JSON_INTEGER]
Temperature = Annotated[StrictFloat, Field(ge=0, le=2)]
Endpoint = Annotated[str, Field(min_length=1, max_length=255)]


def _no_whitespace(key: SecretStr) -> SecretStr:
    # A pasted key with a newline or space would be sent as a broken header.
    if any(char.isspace() or not char.isprintable() for char in key.get_secret_value()):
        raise ValueError("the key must not contain whitespace or control characters")
    return key


ApiKey = Annotated[SecretStr, Field(min_length=1, max_length=1000), AfterValidator(_no_whitespace)]

PRICE_HELP = "USD per 1,000 tokens (decimal >= 0); null: unpriced; omitted: the shipped price"


class AdminModelCreate(StrictModel):
    model_name: ModelName
    is_enabled: StrictBool = True
    display_name: DisplayName | None = None
    max_context_length: ContextLength | None = None
    capabilities: dict[str, Any] | None = None
    input_cost_per_1k_tokens: Price | None = Field(default=None, description=PRICE_HELP)
    output_cost_per_1k_tokens: Price | None = Field(default=None, description=PRICE_HELP)


class AdminModelUpdate(StrictModel):
    is_enabled: StrictBool | None = None
    display_name: DisplayName | None = None
    max_context_length: ContextLength | None = None
    capabilities: dict[str, Any] | None = None
    input_cost_per_1k_tokens: Price | None = None
    output_cost_per_1k_tokens: Price | None = None


class AdminProviderCreate(StrictModel):
    provider_name: Annotated[str, Field(pattern=PROVIDER_NAME_PATTERN)]
    adapter: Annotated[str, Field(min_length=1, max_length=50)] = Field(
        description="openai_compatible, ollama, anthropic, openai, echo or an installed plugin"
    )
    api_endpoint: Endpoint | None = None
    api_key: ApiKey | None = Field(default=None, description="Write-only; stored encrypted")
    is_enabled: StrictBool = True
    default_model: ModelName | None = Field(
        default=None, description="One of `models`; default: the first enabled one"
    )
    max_tokens: MaxTokens | None = None
    temperature_default: Temperature | None = None
    config_json: dict[str, Any] | None = None
    display_name: DisplayName | None = None
    models: list[ModelName | AdminModelCreate] = Field(default_factory=list, max_length=1000)


class AdminProviderUpdate(StrictModel):
    """Only the fields sent change; null clears one (api_key: null removes the key).
    Environment providers: only is_enabled, display_name, max_tokens, temperature_default."""

    adapter: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    api_endpoint: Endpoint | None = None
    api_key: ApiKey | None = None
    is_enabled: StrictBool | None = None
    default_model: ModelName | None = None
    max_tokens: MaxTokens | None = None
    temperature_default: Temperature | None = None
    config_json: dict[str, Any] | None = None
    display_name: DisplayName | None = None


class AdminModelRead(BaseModel):
    model_name: str
    source: str = Field(description="environment: listed in the settings; admin: added here")
    is_enabled: bool
    offered: bool = Field(description="Whether submissions may use it now")
    display_name: str | None
    max_context_length: int | None
    capabilities: dict[str, Any] | None
    # Plain notation with at least 6 decimals, as stored ("0.000100").
    input_cost_per_1k_tokens: Cost | None
    output_cost_per_1k_tokens: Cost | None
    created_at: dt.datetime | None


class AdminProviderRead(BaseModel):
    provider_name: str
    display_name: str | None
    adapter: str
    source: str = Field(description="environment: from the settings; admin: created here")
    api_endpoint: str | None = Field(description="A password in the URL is shown as ***")
    api_key_set: bool
    api_key_hint: str | None = Field(description="The key's last four characters")
    key_source: str = Field(description="environment: the settings hold the key; admin: stored")
    key_setting: str | None = Field(description="The setting holding an environment key")
    is_enabled: bool
    usable: bool = Field(description="Whether a submission to it would be accepted now")
    unusable_reason: str | None
    default_model: str | None
    effective_default_model: str | None = Field(description="The model a request naming none gets")
    max_tokens: int | None
    temperature_default: float | None
    config_json: dict[str, Any] | None
    models: list[AdminModelRead]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class AdminProviderList(BaseModel):
    data: list[AdminProviderRead]
    count: int


class ProbeErrorRead(BaseModel):
    kind: str = Field(description="authentication, unavailable, timeout, bad_request, ...")
    message: str


class ProviderProbeRead(BaseModel):
    ok: bool
    latency_ms: float
    models_listed: int | None
    error: ProbeErrorRead | None


class DiscoveredModelRead(BaseModel):
    id: str
    added: bool = Field(description="Whether the provider has this model already")
    details: dict[str, Any]


class DiscoveredModels(BaseModel):
    provider: str
    data: list[DiscoveredModelRead]
