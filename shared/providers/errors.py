"""One small error hierarchy for every provider.

Adapters translate SDK and HTTP failures into these before they leave the adapter module.
Messages never contain API keys: build them from status codes and the provider's own
error text, never from request headers or the client's repr.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. `retryable` says whether trying the same request again can help."""

    retryable: bool = False
    kind: str = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        return f"{prefix}{self.message}"


class ProviderAuthenticationError(ProviderError):
    kind = "authentication"


class ProviderRateLimited(ProviderError):
    retryable = True
    kind = "rate_limited"


class ProviderQuotaExceeded(ProviderError):
    """Exhausted quota or spend limit: waiting a few seconds will not help."""

    kind = "quota_exceeded"


class ProviderUnavailable(ProviderError):
    """5xx, overloaded (Anthropic 529) or connection refused."""

    retryable = True
    kind = "unavailable"


class ProviderTimeout(ProviderError):
    retryable = True
    kind = "timeout"


class InvalidModel(ProviderError):
    kind = "invalid_model"


class ContextTooLong(ProviderError):
    kind = "context_too_long"


class ProviderBadRequest(ProviderError):
    kind = "bad_request"


class ProviderRedirectRefused(ProviderError):
    """The endpoint answered 3xx. Redirects are never followed, and retrying cannot help: the
    configured endpoint has to change."""

    kind = "redirect_refused"


class StreamInterrupted(ProviderError):
    """The stream broke or ended without its final event: the reply is incomplete."""

    retryable = True
    kind = "stream_interrupted"


class MalformedChunk(StreamInterrupted):
    """A stream chunk that is not valid JSON (OpenAI `data:` line, Anthropic event data, Ollama
    NDJSON line): a broken proxy or a truncated write. The message never quotes the chunk, which
    may echo anything the server had, request headers included."""

    kind = "malformed_chunk"
