"""OpenAI Chat Completions through the official SDK (openai 3.x, which runs on httpx2).

One SDK client per provider instance: building it costs ~18 ms, so never per call. Its own
retries are off (`max_retries=0`): `BaseProvider.generate_streaming_response` is the only loop.

The SDK sends the request, authenticates and raises its typed errors for every non-2xx answer;
the stream body is then read from the SDK's raw response and decoded here with `json.loads`.
The SDK's own decoding builds a pydantic model per chunk: about 130 us of CPU per token
against 40 us (measured on the stub), the largest single cost of a worker under load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import httpx2
import openai

from shared.providers._http import (
    CONNECT_TIMEOUT_CAP,
    MAX_CONNECTIONS,
    MAX_KEEPALIVE_CONNECTIONS,
    GuardedTransport,
    error_fields,
    map_http_error,
    parse_duration,
    parse_retry_after,
    rate_limit_report,
    redact,
    reported_count,
)
from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    RateLimitReport,
    StreamEnd,
    StreamEvent,
    TextDelta,
    UsageReport,
    merge_usage,
)
from shared.providers.endpoints import (
    endpoint_refused,
    private_endpoints_allowed,
    refusal_in,
)
from shared.providers.errors import (
    MalformedChunk,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    StreamInterrupted,
)

logger = logging.getLogger(__name__)

# Sent when a compatible server needs no key: an explicit value stops the SDK from falling
# back to the OPENAI_API_KEY environment variable and leaking OpenAI's key to a third party.
NO_KEY_PLACEHOLDER = "no-key-configured"


def make_timeout(config: ProviderConfig) -> httpx2.Timeout:
    # `timeout` bounds each wait (connect, each read between chunks), not the whole stream:
    # a long reply that keeps streaming is fine, a server that goes silent is not.
    return httpx2.Timeout(config.timeout, connect=min(config.timeout, CONNECT_TIMEOUT_CAP))


def make_http_client(config: ProviderConfig) -> httpx2.Client:
    return httpx2.Client(
        timeout=make_timeout(config),
        # Every connection goes through the SSRF guard: the host's addresses are checked when
        # the socket is opened, so a name re-pointed at cloud metadata is refused then too.
        transport=GuardedTransport(
            allow_private=private_endpoints_allowed(),
            limits=httpx2.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            ),
        ),
        # The SDKs' own default client follows redirects; an upstream answering 307 could then
        # bounce a POST (key and prompt included) to an internal address. A 3xx becomes
        # ProviderRedirectRefused instead (`map_http_error`).
        follow_redirects=False,
    )


class OpenAIProvider(BaseProvider):
    name = "openai"
    display_name = "OpenAI"
    # OpenAI always sends the usage chunk when asked; compatible servers may not.
    estimate_missing_usage = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        self._http = make_http_client(config)
        self._client = openai.OpenAI(
            api_key=self._secret or NO_KEY_PLACEHOLDER,
            base_url=config.api_endpoint or None,
            timeout=make_timeout(config),
            max_retries=0,
            http_client=self._http,
        )

    # -- request ------------------------------------------------------------------------

    def _request_kwargs(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: list[str] | None = None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "temperature": self.config.temperature if temperature is None else temperature,
        }
        if self.config.option("include_usage", True):
            kwargs["stream_options"] = {"include_usage": True}
        limit = max_tokens if max_tokens is not None else self.config.max_tokens
        if limit is not None:
            # Compatible servers (vLLM, llama.cpp, Ollama's /v1) still only read max_tokens.
            kwargs["max_tokens"] = limit
        if stop:
            kwargs["stop"] = stop
        return kwargs

    def _stream(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: list[str] | None = None,
    ) -> Iterator[StreamEvent]:
        kwargs = self._request_kwargs(messages, model, temperature, max_tokens, stop)
        try:
            response = self._client.chat.completions.with_raw_response.create(**kwargs)
        except openai.OpenAIError as exc:
            raise self._map_error(exc, started=False) from None

        limits = openai_rate_limits(response.http_response.headers)
        if limits is not None:
            try:
                yield limits
            except BaseException:  # closed by the consumer before `_sse_chunks` owns the body
                response.http_response.close()
                raise
        finish_reason: str | None = None
        reported: UsageReport | None = None
        completion_chars: list[str] = []
        try:
            for chunk in _sse_chunks(response.http_response):
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        completion_chars.append(text)
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                chunk_usage = chunk.get("usage")
                if chunk_usage:
                    # Usually one chunk near the end; some servers (vLLM's continuous usage
                    # stats) send it on every chunk, hence only changes are passed on.
                    report = UsageReport(
                        reported_count(chunk_usage.get("prompt_tokens")),
                        reported_count(chunk_usage.get("completion_tokens")),
                    )
                    if report != reported:
                        reported = report
                        yield report
        except openai.OpenAIError as exc:
            raise self._map_error(exc, started=True) from None
        except httpx2.TimeoutException:
            raise ProviderTimeout(
                f"no data for {self.config.timeout:g}s mid-stream", provider=self.config.name
            ) from None
        except (httpx2.RequestError, httpx2.StreamError) as exc:
            raise StreamInterrupted(
                f"connection lost mid-stream ({type(exc).__name__})", provider=self.config.name
            ) from None
        except ValueError:
            # json.JSONDecodeError (what the SDK's own decoder would raise too) or a chunk that
            # is JSON but not an object.
            raise MalformedChunk(
                "malformed stream chunk (not a JSON object)", provider=self.config.name
            ) from None

        if finish_reason is None:
            # [DONE] alone is not proof: the finish_reason chunk is the model saying "complete".
            raise StreamInterrupted(
                "stream ended without a finish_reason", provider=self.config.name
            )
        if reported is None and not self.estimate_missing_usage:
            raise StreamInterrupted("stream ended without usage", provider=self.config.name)
        usage = merge_usage(reported, messages, "".join(completion_chars))
        yield StreamEnd(usage=usage, finish_reason=finish_reason)

    # -- errors -------------------------------------------------------------------------

    def _map_error(self, exc: openai.OpenAIError, *, started: bool) -> ProviderError:
        name = self.config.name
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"timed out after {self.config.timeout:g}s", provider=name)
        if isinstance(exc, openai.APIConnectionError):
            refusal = refusal_in(exc)
            if refusal is not None:
                return endpoint_refused(refusal, name)
            cls = StreamInterrupted if started else ProviderUnavailable
            return cls("could not connect" if not started else "connection lost", provider=name)
        if isinstance(exc, openai.APIStatusError):
            message, error_type, code = error_fields(exc.body)
            return map_http_error(
                name,
                exc.status_code,
                message or exc.message,
                error_type=error_type or getattr(exc, "type", None),
                code=code or exc.code,
                retry_after=parse_retry_after(exc.response.headers),
                secret=self._secret,
            )
        if isinstance(exc, openai.APIError):
            # A `data: {"error": ...}` chunk inside a 200 stream.
            message, error_type, code = error_fields({"error": exc.body})
            return map_http_error(
                name,
                None,
                message or exc.message,
                error_type=error_type or exc.type,
                code=code or exc.code,
                secret=self._secret,
            )
        return ProviderUnavailable(redact(str(exc), self._secret), provider=name)

    # -- models and lifecycle -----------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        try:
            page = self._client.models.list()
            return [
                {"id": model.id, "owned_by": getattr(model, "owned_by", None)} for model in page
            ]
        except openai.OpenAIError as exc:
            raise self._map_error(exc, started=False) from None
        except httpx2.HTTPError as exc:
            raise ProviderUnavailable(type(exc).__name__, provider=self.config.name) from None

    def release_resources(self) -> None:
        self._client.close()
        self._http.close()


def openai_rate_limits(headers: Mapping[str, str]) -> RateLimitReport | None:
    """OpenAI's `x-ratelimit-*` headers (resets are Go durations: "6m0s", "20ms")."""
    return rate_limit_report(
        limit_requests=headers.get("x-ratelimit-limit-requests"),
        remaining_requests=headers.get("x-ratelimit-remaining-requests"),
        limit_tokens=headers.get("x-ratelimit-limit-tokens"),
        remaining_tokens=headers.get("x-ratelimit-remaining-tokens"),
        reset_requests=parse_duration(headers.get("x-ratelimit-reset-requests")),
        reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )


def _sse_chunks(response: httpx2.Response) -> Iterator[dict[str, Any]]:
    """The JSON chunks of a chat.completion.chunk SSE body, up to `data: [DONE]`.

    A chunk carrying `error` raises `openai.APIError`, exactly as the SDK's own stream does,
    so mid-stream errors take the same mapping path. The response is closed in every case.
    """
    data: list[str] = []
    event: str | None = None
    try:
        for line in response.iter_lines():
            if line:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    data.append(value)
                elif field == "event":
                    event = value
                continue
            if not data:  # a blank line ends an event; comments and pings carry no data
                event = None
                continue
            payload, data = "\n".join(data), []
            if payload.startswith("[DONE]"):
                return
            chunk = json.loads(payload)
            if not isinstance(chunk, dict):
                raise ValueError("stream chunk is not a JSON object")
            if chunk.get("error") or event == "error":
                error = chunk.get("error") or chunk
                message = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(
                    message
                    if isinstance(message, str) and message
                    else "An error occurred during streaming",
                    request=response.request,
                    body=error,
                )
            event = None
            yield chunk
        if data:  # the body ended without the blank line after its last event
            payload = "\n".join(data)
            if not payload.startswith("[DONE]"):
                chunk = json.loads(payload)
                if not isinstance(chunk, dict):
                    raise ValueError("stream chunk is not a JSON object")
                yield chunk
    finally:
        response.close()
