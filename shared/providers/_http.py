"""Helpers shared by the HTTP adapters: one status-to-error mapping, retry-after, redaction.

Every adapter funnels SDK and HTTP failures through `map_http_error` so the same server answer
becomes the same `ProviderError` whichever client library saw it.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

from shared.providers.errors import (
    ContextTooLong,
    InvalidModel,
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderRedirectRefused,
    ProviderTimeout,
    ProviderUnavailable,
)

# Sized for one gevent worker keeping hundreds of streams open against one host.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE_CONNECTIONS = 200
CONNECT_TIMEOUT_CAP = 10.0

_CONTEXT_WORDS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "maximum context",
    "too many tokens",
)
_QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_error"}
_QUOTA_WORDS = (
    "insufficient_quota",
    "exceeded your current quota",
    "spend limit",
    "credit balance",
    "billing",
)
_MODEL_CODES = {"model_not_found"}
# Key-shaped tokens some providers echo back (OpenAI's 401 shows a masked key).
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{4,}|key-[A-Za-z0-9_\-*]{8,})")


def redact(text: str, secret: str | None = None) -> str:
    """Drop the configured key and anything key-shaped from text that may reach logs."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(parsed.timestamp() - time.time(), 0.0)


def _has(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def map_http_error(
    provider: str,
    status: int | None,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
    secret: str | None = None,
) -> ProviderError:
    """Turn one provider failure (an HTTP status or a mid-stream error event) into our error.

    `status` is None for errors that arrive inside a 200 stream; then `error_type`/`code`
    (e.g. Anthropic's `overloaded_error`, OpenAI's `server_error`) decide.
    """
    message = redact(message or "", secret) or "no error message"
    kinds = {k for k in (error_type, code) if k}
    text = " ".join([message, *kinds])
    detail = f"{message} (status {status})" if status else message
    kwargs: dict[str, Any] = {"provider": provider, "status_code": status}

    if status is not None and 300 <= status < 400:
        # Never followed (clients are built with redirects off): an upstream could bounce a
        # worker's POST, key included, to an internal address. The body and Location are left
        # out of the message on purpose: they may name that address or carry a signed URL.
        return ProviderRedirectRefused(
            f"redirect refused: the endpoint answered {status}; configure the provider's final URL",
            **kwargs,
        )
    if kinds & _QUOTA_CODES or status == 402:
        return ProviderQuotaExceeded(detail, **kwargs)
    if status in (401, 403) or kinds & {
        "authentication_error",
        "permission_error",
        "invalid_api_key",
    }:
        return ProviderAuthenticationError(detail, **kwargs)
    if status == 429 or kinds & {"rate_limit_error", "rate_limit_exceeded"}:
        if _has(text, _QUOTA_WORDS):
            return ProviderQuotaExceeded(detail, **kwargs)
        return ProviderRateLimited(detail, retry_after=retry_after, **kwargs)
    if status == 404 or kinds & _MODEL_CODES or "not_found_error" in kinds:
        return InvalidModel(detail, **kwargs)
    if status == 408 or "timeout" in kinds:
        return ProviderTimeout(detail, retry_after=retry_after, **kwargs)
    if (status is not None and status >= 500) or kinds & {
        "overloaded_error",
        "api_error",
        "server_error",
    }:
        return ProviderUnavailable(detail, retry_after=retry_after, **kwargs)
    if _has(text, _CONTEXT_WORDS):
        return ContextTooLong(detail, **kwargs)
    if _has(text, ("credit balance", "spend limit")):
        return ProviderQuotaExceeded(detail, **kwargs)
    if status is None:
        # An unknown error event inside a stream: the reply is broken, a retry may help.
        return ProviderUnavailable(detail, **kwargs)
    return ProviderBadRequest(detail, **kwargs)


def error_fields(body: object) -> tuple[str, str | None, str | None]:
    """(message, type, code) from the common `{"error": {...}}` / `{"error": "..."}` shapes."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            code = error.get("code")
            return (
                str(error.get("message") or ""),
                str(error["type"]) if error.get("type") else None,
                str(code) if code else None,
            )
        if isinstance(error, str):
            return error, None, None
    if isinstance(body, str):
        return body, None, None
    return "", None, None


def reported_count(value: object) -> int | None:
    """A token count from a provider's JSON, or None when it is absent or not a count."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)
