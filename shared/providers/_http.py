"""Helpers shared by the HTTP adapters: one status-to-error mapping, retry-after, redaction,
and the SSRF connection guard both client libraries connect through.

Every adapter funnels SDK and HTTP failures through `map_http_error` so the same server answer
becomes the same `ProviderError` whichever client library saw it.
"""

from __future__ import annotations

import email.utils
import math
import re
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpcore2
import httpx2
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from shared.providers.base import RateLimitReport
from shared.providers.endpoints import UnsafeEndpoint, check_resolved
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


# Go's time.Duration text, which OpenAI's x-ratelimit-reset-* headers use: "6m0s", "20ms".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds from a Go duration ("1h2m3.5s", "6m0s", "20ms") or a plain number of seconds
    (what some OpenAI-compatible servers send); None when it is neither."""
    if not text:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def seconds_until(text: str | None) -> float | None:
    """Seconds from now until an RFC 3339 time (Anthropic's `*-reset` headers), at least 0."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:  # RFC 3339 always has an offset; a bare time is taken as UTC
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def header_count(value: str | None) -> int | None:
    """A non-negative count from a header value, or None when absent or not a number."""
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        try:
            count = int(float(value))
        except ValueError:
            return None
    return count if count >= 0 else None


def rate_limit_report(
    *,
    limit_requests: str | None,
    remaining_requests: str | None,
    limit_tokens: str | None,
    remaining_tokens: str | None,
    reset_requests: float | None,
    reset_tokens: float | None,
    retry_after: float | None = None,
) -> RateLimitReport | None:
    """One report from raw header values; None when the response carried none of them.

    `reset_seconds`: an explicit retry-after wins; else the reset of the exhausted limit (the
    later one when both are), else the requests reset, else the tokens reset.
    """
    report = RateLimitReport(
        remaining_requests=header_count(remaining_requests),
        limit_requests=header_count(limit_requests),
        remaining_tokens=header_count(remaining_tokens),
        limit_tokens=header_count(limit_tokens),
    )
    if retry_after is not None:
        report.reset_seconds = retry_after
    else:
        exhausted = [
            reset
            for remaining, reset in (
                (report.remaining_requests, reset_requests),
                (report.remaining_tokens, reset_tokens),
            )
            if remaining == 0 and reset is not None
        ]
        report.reset_seconds = (
            max(exhausted)
            if exhausted
            else (reset_requests if reset_requests is not None else reset_tokens)
        )
    if report == RateLimitReport():
        return None
    return report


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


# -- SSRF connection guard: httpx2 (the openai and anthropic SDKs) --------------------------


class GuardedNetworkBackend(httpcore2.SyncBackend):
    """httpcore's socket backend, connecting only to checked addresses of the host."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = check_resolved(host, port, self.allow_private)
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        last_error: Exception | None = None
        # Tried in resolver order, as socket.create_connection would; TLS (started by the
        # connection afterwards) still sends the original host as SNI.
        for address in addresses:
            try:
                return super().connect_tcp(
                    address, port, timeout, local_address, list(socket_options or ())
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


class GuardedTransport(httpx2.HTTPTransport):
    """httpx2's transport over `GuardedNetworkBackend`. A refusal leaves as an
    `httpx2.ConnectError` raised from the `UnsafeEndpoint`, which both SDKs wrap alike
    (`APIConnectionError`); find it with `refusal_in`."""

    def __init__(self, *, allow_private: bool, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(allow_private=allow_private),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return super().handle_request(request)
        except UnsafeEndpoint as exc:
            raise httpx2.ConnectError(f"endpoint refused: {exc.reason}", request=request) from exc


# -- requests / urllib3 (the ollama adapter) --------------------------------------------------


class _GuardedConnectionMixin:
    allow_private: bool = True
    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        try:
            addresses = check_resolved(self._dns_host, self.port, self.allow_private)
        except socket.gaierror as exc:
            raise NameResolutionError(self._dns_host, self, exc) from exc  # type: ignore[arg-type]
        name = self._dns_host
        last_error: Exception | None = None
        try:
            for address in addresses:
                # urllib3 connects to `_dns_host`; `host` (SNI, certificate check, Host header)
                # is read after the socket is open, when the name is back in place.
                self._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc,no-any-return]
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    last_error = exc
        finally:
            self._dns_host = name
        assert last_error is not None
        raise last_error


def _connection_classes(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    attrs = {"allow_private": allow_private}
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), attrs)
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), attrs)
    http_pool = type(
        "GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}
    )
    https_pool = type(
        "GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )
    return {"http": http_pool, "https": https_pool}


_POOL_CLASSES = {policy: _connection_classes(policy) for policy in (True, False)}


class GuardedHTTPAdapter(HTTPAdapter):
    """requests' adapter whose connections connect only to checked addresses. Proxies from the
    environment are not used: a proxy resolves the name itself, out of reach of the check."""

    __attrs__ = [*HTTPAdapter.__attrs__, "allow_private"]

    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        self.allow_private = allow_private  # read by init_poolmanager, called by __init__
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES[self.allow_private]

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)
