"""All configuration, read once from the environment (and an optional `.env`).

Names follow the multi-provider plan so existing deployments keep working.
"""

from __future__ import annotations

import json
import re
import secrets
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

CommaList = Annotated[list[str], NoDecode]

MIN_SECRET_KEY_LENGTH = 32
BUILT_IN_PROVIDERS = ("echo", "ollama", "anthropic", "openai")

# ENVIRONMENT=test without SECRET_KEY signs with this: random per process, so no key that
# anyone could know is ever accepted (tokens do not outlive the test process).
_TEST_PROCESS_SECRET_KEY = secrets.token_urlsafe(48)


class InvalidSettings(Exception):
    """Settings this process cannot run with. The message names settings and reasons, never
    their values: a value may be a provider key."""


class MissingSecretKey(InvalidSettings):
    def __init__(self) -> None:
        super().__init__(
            "SECRET_KEY is not set: the API signs access tokens with it. Generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it in the "
            f"environment or .env (at least {MIN_SECRET_KEY_LENGTH} characters). `switchboard dev` "
            "creates and keeps one for you; ENVIRONMENT=test uses a random key per process."
        )


class MissingProviderKeysSecret(InvalidSettings):
    def __init__(self) -> None:
        super().__init__(
            "PROVIDER_KEYS_SECRET is not set: production stores provider keys encrypted with "
            'it. Generate one with `python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"` and set it in the environment or .env '
            "(docs/admin.md, Provider keys)."
        )


class CompatibleProviderSettings(BaseModel):
    """One OpenAI-compatible server (vLLM, LM Studio, Groq, OpenRouter...), configured as JSON."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,49}$")
    base_url: str
    api_key: SecretStr | None = None
    models: list[str] = Field(min_length=1)
    default_model: str | None = None
    enabled: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", case_sensitive=True
    )

    ENVIRONMENT: Literal["development", "test", "production"] = "development"

    DATABASE_URL: str = "sqlite:///./switchboard.db"
    # The API runs at most POOL_SIZE + MAX_OVERFLOW database units of work at once (its
    # thread pool is sized to match), so no request ever waits on a connection it cannot get.
    # Overflow connections are opened and closed per use (a PostgreSQL backend fork each):
    # under load that churn costs more than it gives, hence a fixed pool by default.
    DATABASE_POOL_SIZE: int = Field(default=20, gt=0)
    DATABASE_MAX_OVERFLOW: int = Field(default=0, ge=0)
    DATABASE_POOL_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    REDIS_URL: str = "redis://127.0.0.1:6379/0"

    # Auth. SECRET_KEY signs access tokens: the API refuses to start without one (except with
    # ENVIRONMENT=test); workers and the CLI do not read it.
    SECRET_KEY: SecretStr | None = None
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=60 * 24, gt=0)
    # Attempts per minute at POST /auth/token and POST /auth/register, each endpoint counted
    # on its own, per client IP and per email; 0 turns that limit off.
    AUTH_RATE_LIMIT_PER_IP_PER_MINUTE: int = Field(default=30, ge=0)
    AUTH_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE: int = Field(default=10, ge=0)

    # Encrypts the provider keys stored in provider_configs: one or more comma-separated
    # Fernet keys, newest first (the first encrypts, all decrypt, so a key can be rotated;
    # see `switchboard rotate-keys`). Required in production.
    PROVIDER_KEYS_SECRET: SecretStr | None = None

    # Providers (the plan's Phase 4 names and defaults).
    OLLAMA_API_URL: str = "http://ollama:11434"
    OLLAMA_MODELS: CommaList = ["llama3.1:8b-instruct-q8_0"]
    ANTHROPIC_API_KEY: SecretStr | None = None
    ANTHROPIC_MODELS: CommaList = ["claude-3-opus-20240229", "claude-3-sonnet-20240229"]
    ANTHROPIC_BASE_URL: str | None = None
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_API_BASE: str = "https://api.openai.com/v1"
    OPENAI_MODELS: CommaList = ["gpt-4", "gpt-3.5-turbo"]
    # JSON list of CompatibleProviderSettings objects.
    OPENAI_COMPATIBLE_PROVIDERS: list[CompatibleProviderSettings] = []
    ECHO_ENABLED: bool = True
    ECHO_MODELS: CommaList = ["echo-1"]
    ECHO_TOKEN_DELAY_MS: float = Field(default=0.0, ge=0)

    DEFAULT_PROVIDER: str = "ollama"
    DEFAULT_OLLAMA_MODEL: str = "llama3.1:8b-instruct-q8_0"
    DEFAULT_ANTHROPIC_MODEL: str = "claude-3-sonnet-20240229"
    DEFAULT_OPENAI_MODEL: str = "gpt-3.5-turbo"
    # The plan's feature flag: off sends every request to DEFAULT_PROVIDER.
    MULTI_PROVIDER_ENABLED: bool = True
    # Entry-point providers to load; empty means all installed ones.
    PROVIDERS_ENABLED: CommaList = []

    PROVIDER_TIMEOUT_SECONDS: float = Field(default=120.0, gt=0)
    PROVIDER_MAX_RETRIES: int = Field(default=2, ge=0, le=10)
    ANTHROPIC_DEFAULT_MAX_TOKENS: int = Field(default=4096, gt=0)
    # Provider endpoints may be loopback or private addresses (a self-hosted Ollama or vLLM);
    # false refuses them, for shared deployments. Cloud metadata and link-local addresses are
    # refused either way (shared/providers/endpoints.py).
    PROVIDER_ENDPOINTS_ALLOW_PRIVATE: bool = True

    # HTTP limits.
    MAX_REQUEST_BODY_BYTES: int = Field(default=1_048_576, gt=0)
    MAX_MESSAGE_CHARS: int = Field(default=200_000, gt=0)

    # Queue. The visibility timeout must exceed the hard limit, or Redis redelivers
    # a job that is still running (celery/celery#5935).
    TASK_SOFT_TIME_LIMIT: int = Field(default=600, gt=0)
    TASK_TIME_LIMIT: int = Field(default=660, gt=0)
    BROKER_VISIBILITY_TIMEOUT: int = Field(default=900, gt=0)
    TASK_MAX_DELIVERIES: int = Field(default=3, gt=0)
    WORKER_CONCURRENCY: int = Field(default=500, gt=0)
    # How long a worker keeps retrying to store a finished reply while the database is away;
    # after that the outcome waits in Redis and a later delivery stores it (never regenerates).
    FINISH_RETRY_SECONDS: float = Field(default=60.0, gt=0)
    # A queued reply whose provider queue has no live worker for this long ends failed.
    QUEUED_REPLY_TIMEOUT_SECONDS: int = Field(default=600, gt=0)
    # How often a worker checks its replies' stop flags and deadlines (cancel latency).
    CANCEL_CHECK_INTERVAL_SECONDS: float = Field(default=0.5, gt=0)
    # How often each process checks the provider tables' version even without a change
    # notice (pub/sub drops notices while a subscriber reconnects).
    PROVIDER_CATALOG_CHECK_SECONDS: float = Field(default=1.0, gt=0, le=60)
    # Context window assumed for a model whose provider_models row has no max_context_length.
    DEFAULT_CONTEXT_TOKENS: int = Field(default=8192, gt=0)
    # Task events feed Flower's Tasks tab (its Broker tab shows queue lengths without them).
    # Each costs Redis publishes on the hot path, so they are opt-in.
    CELERY_TASK_EVENTS: bool = False
    # Where admins open Flower: the admin page's queue view links to it (GET /admin/queues).
    FLOWER_URL: str = "http://127.0.0.1:5555"
    # Each worker process serves Prometheus metrics on its own port (two worker processes on
    # one host need two ports); 0 serves none. The API serves /metrics to admins instead.
    WORKER_METRICS_PORT: int = Field(default=0, ge=0, le=65535)
    WORKER_METRICS_BIND_ADDRESS: str = "127.0.0.1"

    # Routing (docs/providers/routing.md). A stream that sends nothing for this long (before
    # its first token or between tokens) is given up and the reply moves to its fallback.
    STREAM_STALL_SECONDS: float = Field(default=60.0, gt=0)
    # A target failing this many times within the window cools down: pools and fallback
    # chains pass over it until the cooldown ends.
    TARGET_FAILURE_THRESHOLD: int = Field(default=3, gt=0)
    TARGET_FAILURE_WINDOW_SECONDS: float = Field(default=60.0, gt=0)
    TARGET_COOLDOWN_SECONDS: float = Field(default=30.0, gt=0)
    RESPONSE_CACHE_TTL_SECONDS: int = Field(default=3600, gt=0)

    # Token channel and SSE.
    TOKEN_STREAM_TTL_SECONDS: int = Field(default=3600, gt=0)
    TOKEN_FLUSH_INTERVAL_MS: float = Field(default=10.0, ge=0)
    SSE_HEARTBEAT_SECONDS: float = Field(default=15.0, gt=0)
    SSE_MAX_CONNECTION_SECONDS: float = Field(default=600.0, gt=0)
    WAIT_TIMEOUT_SECONDS: float = Field(default=300.0, gt=0)

    @field_validator(
        "OLLAMA_MODELS",
        "ANTHROPIC_MODELS",
        "OPENAI_MODELS",
        "ECHO_MODELS",
        "PROVIDERS_ENABLED",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("OPENAI_COMPATIBLE_PROVIDERS", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _normalise_postgres_scheme(cls, value: str) -> str:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; our driver is psycopg2.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg2://" + value.removeprefix(prefix)
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        # A short HMAC key can be brute-forced from one token; a missing key is refused
        # where it is needed (the API's start-up, see `secret_key`).
        if (
            self.SECRET_KEY is not None
            and len(self.SECRET_KEY.get_secret_value().strip()) < MIN_SECRET_KEY_LENGTH
        ):
            raise ValueError(f"SECRET_KEY must have at least {MIN_SECRET_KEY_LENGTH} characters")
        compatible = [c.name for c in self.OPENAI_COMPATIBLE_PROVIDERS]
        taken = sorted(
            {n for n in compatible if n in BUILT_IN_PROVIDERS or compatible.count(n) > 1}
        )
        if taken:
            # A compatible server may not shadow a built-in provider or another server.
            raise ValueError(
                f"OPENAI_COMPATIBLE_PROVIDERS: names must be unique and not a built-in "
                f"provider's ({', '.join(BUILT_IN_PROVIDERS)}); repeated: {', '.join(taken)}"
            )
        if self.PROVIDER_KEYS_SECRET is not None:
            from shared.providers.keys import check_keys_secret

            # Refused here, in every environment: a malformed secret would only show when
            # the first key is stored or read.
            check_keys_secret(self.PROVIDER_KEYS_SECRET.get_secret_value())
        if not self.TASK_SOFT_TIME_LIMIT < self.TASK_TIME_LIMIT < self.BROKER_VISIBILITY_TIMEOUT:
            raise ValueError(
                "need TASK_SOFT_TIME_LIMIT < TASK_TIME_LIMIT < BROKER_VISIBILITY_TIMEOUT"
            )
        return self

    @property
    def secret_key(self) -> str:
        """The token signing key; raises MissingSecretKey when there is none to use."""
        if self.SECRET_KEY is not None:
            return self.SECRET_KEY.get_secret_value()
        if self.ENVIRONMENT == "test":
            return _TEST_PROCESS_SECRET_KEY
        raise MissingSecretKey()

    @property
    def default_models(self) -> dict[str, str]:
        defaults = {
            "ollama": self.DEFAULT_OLLAMA_MODEL,
            "anthropic": self.DEFAULT_ANTHROPIC_MODEL,
            "openai": self.DEFAULT_OPENAI_MODEL,
            "echo": self.ECHO_MODELS[0],
        }
        for compatible in self.OPENAI_COMPATIBLE_PROVIDERS:
            defaults[compatible.name] = compatible.default_model or compatible.models[0]
        return defaults


@lru_cache
def get_settings() -> Settings:
    """The process's settings, checked as a deployment: every process refuses to start with
    settings that cannot serve a request (a bad value, a default provider that is off)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        # `from None`: pydantic's own text shows the offending input, which may be a key.
        raise InvalidSettings(describe_validation_error(exc)) from None
    except SettingsError as exc:
        raise InvalidSettings(_describe_source_error(exc)) from None
    from shared.providers.catalog import check_default_provider

    check_default_provider(settings)
    if settings.ENVIRONMENT == "production" and settings.PROVIDER_KEYS_SECRET is None:
        raise MissingProviderKeysSecret()
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    """Each failing setting's name and reason, without the input pydantic would show."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return "invalid settings: " + "; ".join(problems)


def _describe_source_error(exc: SettingsError) -> str:
    # pydantic-settings names the field in its message; the cause (e.g. a JSONDecodeError)
    # says where parsing stopped. Neither the raw value nor the cause's document is shown.
    match = re.search(r'field "([A-Za-z0-9_]+)"', str(exc))
    name = match.group(1) if match else "a setting"
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        reason = f"not valid JSON ({cause.msg} at line {cause.lineno} column {cause.colno})"
    else:
        reason = "cannot be parsed" + (f" ({type(cause).__name__})" if cause else "")
    return f"invalid settings: {name}: {reason}"
