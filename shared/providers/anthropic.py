"""Anthropic Messages API through the official SDK (anthropic 2.x, which runs on httpx2).

Differences from OpenAI that matter here: system prompts go in the top-level `system` field
(the API rejects a "system" role in `messages`), `max_tokens` is mandatory, and usage arrives
in two halves: input tokens in `message_start`, output tokens in `message_delta`. Each half is
passed on as a `UsageReport` when it arrives, so an error after `message_start` keeps the input
count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import anthropic
import httpx2

from shared.providers._http import (
    error_fields,
    map_http_error,
    parse_retry_after,
    rate_limit_report,
    redact,
    seconds_until,
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
from shared.providers.endpoints import endpoint_refused, refusal_in
from shared.providers.errors import (
    MalformedChunk,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    StreamInterrupted,
)
from shared.providers.openai import NO_KEY_PLACEHOLDER, make_http_client, make_timeout

FALLBACK_MAX_TOKENS = 4096
# Anthropic's stop reasons, in the OpenAI vocabulary the rest of the app uses.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop_sequence", "max_tokens": "length"}


class AnthropicProvider(BaseProvider):
    name = "anthropic"
    display_name = "Anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        self._http = make_http_client(config)
        # An explicit api_key also stops the SDK from reading profiles or env credentials.
        self._client = anthropic.Anthropic(
            api_key=self._secret or NO_KEY_PLACEHOLDER,
            base_url=config.api_endpoint or None,
            timeout=make_timeout(config),
            max_retries=0,
            http_client=self._http,
        )

    def _request_kwargs(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: list[str] | None = None,
    ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        limit = (
            max_tokens
            or self.config.max_tokens
            or self.config.option("default_max_tokens")
            or FALLBACK_MAX_TOKENS
        )
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": int(limit),
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if stop:
            kwargs["stop_sequences"] = stop
        if temperature is not None:
            # anthropic 2.x dropped `temperature` from `messages.create` (newer models reject
            # sampling parameters), so it is sent raw, and only when a caller asks for it:
            # the config-wide default would turn into 400s on those models.
            kwargs["extra_body"] = {"temperature": temperature}
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
            stream = self._client.messages.create(**kwargs)
        except anthropic.AnthropicError as exc:
            raise self._map_error(exc, started=False) from None

        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        text_parts: list[str] = []
        stop_reason: str | None = None
        stopped = False
        try:
            with stream:
                # The SDK's Stream has the response (its headers) before any event is read.
                limits = anthropic_rate_limits(stream.response.headers)
                if limits is not None:
                    yield limits
                for event in stream:
                    kind = event.type
                    if kind == "message_start":
                        # Its output_tokens is a placeholder counted before any text (the API
                        # sends 1): reported as the completion count it would outlive the text
                        # that follows, so only `message_delta`'s running count is taken.
                        prompt_tokens = _input_tokens(event.message.usage)
                        if prompt_tokens is not None:
                            yield UsageReport(prompt_tokens, None)
                    elif kind == "content_block_delta":
                        text = getattr(event.delta, "text", None)
                        if text:
                            text_parts.append(text)
                            yield TextDelta(text)
                    elif kind == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output = getattr(event.usage, "output_tokens", None)
                        completion_tokens = output if output is not None else completion_tokens
                        prompt_tokens = _input_tokens(event.usage) or prompt_tokens
                        yield UsageReport(prompt_tokens, completion_tokens)
                    elif kind == "message_stop":
                        stopped = True
        except anthropic.AnthropicError as exc:
            raise self._map_error(exc, started=True) from None
        except json.JSONDecodeError:
            # The SDK decodes each event's data with `sse.json()` (plain json.loads) and lets
            # the decode error through unwrapped.
            raise MalformedChunk(
                "malformed stream event (data is not JSON)", provider=self.config.name
            ) from None
        except httpx2.TimeoutException:
            raise ProviderTimeout(
                f"no data for {self.config.timeout:g}s mid-stream", provider=self.config.name
            ) from None
        except (httpx2.RequestError, httpx2.StreamError) as exc:
            raise StreamInterrupted(
                f"connection lost mid-stream ({type(exc).__name__})", provider=self.config.name
            ) from None

        if not stopped or prompt_tokens is None:
            raise StreamInterrupted("stream ended without message_stop", provider=self.config.name)
        finish = _FINISH_REASONS.get(stop_reason or "", stop_reason or "stop")
        usage = merge_usage(
            UsageReport(prompt_tokens, completion_tokens), messages, "".join(text_parts)
        )
        yield StreamEnd(usage, finish_reason=finish)

    def _map_error(self, exc: anthropic.AnthropicError, *, started: bool) -> ProviderError:
        name = self.config.name
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(f"timed out after {self.config.timeout:g}s", provider=name)
        if isinstance(exc, anthropic.APIConnectionError):
            refusal = refusal_in(exc)
            if refusal is not None:
                return endpoint_refused(refusal, name)
            cls = StreamInterrupted if started else ProviderUnavailable
            return cls("could not connect" if not started else "connection lost", provider=name)
        if isinstance(exc, anthropic.APIStatusError):
            message, error_type, code = error_fields(exc.body)
            # An `event: error` inside the 200 stream arrives as a status error with status 200.
            status = None if 200 <= exc.status_code < 300 else exc.status_code
            return map_http_error(
                name,
                status,
                message or getattr(exc, "api_message", None) or "",
                error_type=error_type or getattr(exc, "type", None),
                code=code,
                retry_after=parse_retry_after(exc.response.headers),
                secret=self._secret,
            )
        return ProviderUnavailable(redact(str(exc), self._secret), provider=name)

    def list_models(self) -> list[dict[str, Any]]:
        try:
            return [
                {"id": model.id, "display_name": getattr(model, "display_name", None)}
                for model in self._client.models.list()
            ]
        except anthropic.AnthropicError as exc:
            raise self._map_error(exc, started=False) from None

    def release_resources(self) -> None:
        self._client.close()
        self._http.close()


def anthropic_rate_limits(headers: Mapping[str, str]) -> RateLimitReport | None:
    """Anthropic's `anthropic-ratelimit-*` headers (resets are RFC 3339 times) and
    `retry-after`."""
    return rate_limit_report(
        limit_requests=headers.get("anthropic-ratelimit-requests-limit"),
        remaining_requests=headers.get("anthropic-ratelimit-requests-remaining"),
        limit_tokens=headers.get("anthropic-ratelimit-tokens-limit"),
        remaining_tokens=headers.get("anthropic-ratelimit-tokens-remaining"),
        reset_requests=seconds_until(headers.get("anthropic-ratelimit-requests-reset")),
        reset_tokens=seconds_until(headers.get("anthropic-ratelimit-tokens-reset")),
        retry_after=parse_retry_after(headers),
    )


def _input_tokens(usage: Any) -> int | None:
    """Input tokens including cached ones (billed input too, reported separately); None when
    the event carries no input count."""
    counts = [
        getattr(usage, field, None)
        for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if all(count is None for count in counts):
        return None
    return sum(count or 0 for count in counts)
