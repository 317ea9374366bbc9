"""The provider interface (the plan's Phase 2), synchronous by design.

Workers run a gevent pool: blocking SDK calls yield to other greenlets, so one worker process
keeps hundreds of generations in flight without an event loop in every adapter.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.providers.errors import ProviderBadRequest, ProviderError

MAX_RETRY_SLEEP_SECONDS = 60.0
# OpenAI's and Anthropic's APIs both take up to 4 stop sequences per request.
MAX_STOP_SEQUENCES = 4


class ProviderConfig(BaseModel):
    """Everything needed to build one provider instance. Equal configs share an instance."""

    model_config = ConfigDict(frozen=True)

    name: str
    adapter: str  # the entry-point name of the adapter class, e.g. "openai_compatible"
    display_name: str | None = None
    api_key: SecretStr | None = None
    api_endpoint: str | None = None
    models: tuple[str, ...] = ()
    default_model: str | None = None
    timeout: float = 120.0
    max_retries: int = 2
    temperature: float = 0.7
    max_tokens: int | None = None
    enabled: bool = True
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True, init=False)
class Usage:
    """Token counts of one reply, and which of them we estimated ourselves.

    A provider may report one count and not the other (Anthropic's input tokens arrive in
    `message_start`, the output count only at the end), so each count has its own flag.
    """

    prompt_tokens: int
    completion_tokens: int
    prompt_estimated: bool
    completion_estimated: bool

    def __init__(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        estimated: bool = False,
        *,
        prompt_estimated: bool = False,
        completion_estimated: bool = False,
    ) -> None:
        # `estimated=True` (both counts) is kept so plugins written against the single flag
        # keep working.
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.prompt_estimated = prompt_estimated or estimated
        self.completion_estimated = completion_estimated or estimated

    @property
    def estimated(self) -> bool:
        """True when at least one count is ours rather than the provider's."""
        return self.prompt_estimated or self.completion_estimated

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
            "prompt_estimated": self.prompt_estimated,
            "completion_estimated": self.completion_estimated,
        }


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class UsageReport:
    """The counts the provider has reported so far, yielded as soon as it reports them.

    Counts are totals for the reply, not increments, and each report carries every count
    known at that point: a later report supersedes earlier ones, so a consumer keeps the last
    one. None means "not reported (yet)". It exists so that a stream that errors or is
    cancelled before its `StreamEnd` still keeps what the provider counted (`merge_usage`).
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(slots=True)
class RateLimitReport:
    """The provider's rate-limit headers of one call, yielded once, before the first delta.

    None means the header was absent or unreadable. `reset_seconds` is how long until the
    exhausted limit (requests or tokens) refills, or the requests limit when neither is
    exhausted; a `retry-after` header wins over both. It describes the account's limits at the
    time of the call, not this reply, so it is never held back or dropped by the retry loop.
    """

    remaining_requests: int | None = None
    limit_requests: int | None = None
    remaining_tokens: int | None = None
    limit_tokens: int | None = None
    reset_seconds: float | None = None


@dataclass(slots=True)
class StreamEnd:
    """Always the last item of a successful stream."""

    usage: Usage
    finish_reason: str


StreamEvent = TextDelta | UsageReport | RateLimitReport | StreamEnd


class ChatResponse(BaseModel):
    content: str
    provider: str
    model: str
    usage: dict[str, int | bool] | None = None
    finish_reason: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    """Rough token count for servers that report none.

    ~4 characters per token, OpenAI's rule of thumb for English text.
    """
    return math.ceil(len(text) / 4) if text else 0


def estimate_prompt_tokens(messages: list[Message]) -> int:
    # 4 tokens of framing per message, as in OpenAI's cookbook counting recipe.
    return sum(estimate_tokens(m.content) + 4 for m in messages) + 2


def merge_usage(reported: UsageReport | None, messages: list[Message], text: str) -> Usage:
    """Usage of a reply: every count the provider reported, estimates only for the others.

    `messages` is the prompt that was sent and `text` the reply text received; they are only
    used for the counts the provider did not report, and those are flagged as estimated.
    """
    prompt = reported.prompt_tokens if reported else None
    completion = reported.completion_tokens if reported else None
    return Usage(
        prompt if prompt is not None else estimate_prompt_tokens(messages),
        completion if completion is not None else estimate_tokens(text),
        prompt_estimated=prompt is None,
        completion_estimated=completion is None,
    )


class InflightGuard:
    """Counts streams in flight so `close()` on a replaced instance waits for them.

    The manager swaps an instance when its config changes; closing the HTTP pool under
    streams that are still running would cut them, so the close happens on the last release.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._closing = False
        self.closed = False

    def acquire(self) -> None:
        with self._lock:
            self._active += 1

    def release(self) -> bool:
        """Returns True when the caller should now close the resources."""
        with self._lock:
            self._active -= 1
            return self._closing and self._active == 0 and not self.closed

    def request_close(self) -> bool:
        with self._lock:
            self._closing = True
            return self._active == 0 and not self.closed

    def mark_closed(self) -> None:
        with self._lock:
            self.closed = True


class BaseProvider(ABC):
    """Adapters implement `_stream`; retries and the non-streaming call are shared here."""

    name: ClassVar[str]
    display_name: ClassVar[str] = ""
    is_demo: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._inflight = InflightGuard()

    def __repr__(self) -> str:
        # Never show the client objects: some keep the API key as a plain attribute.
        return (
            f"<{type(self).__name__} name={self.config.name!r} "
            f"endpoint={self.config.api_endpoint!r}>"
        )

    @classmethod
    def default_config(cls, settings: Any) -> ProviderConfig | None:
        """A plugin's own configuration, used when the built-in catalog does not know it.

        `settings` is the app's `Settings`; plugins usually read their own environment
        variables here. Return None to stay unconfigured (listed but not usable).
        """
        return None

    @abstractmethod
    def _stream(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: list[str] | None = None,
    ) -> Iterator[StreamEvent]:
        """One attempt: yield TextDelta items, then exactly one StreamEnd.

        `stop`: sequences that end the reply where the model would write one (not included
        in the text); a StreamEnd's finish reason is then `stop_sequence` when the provider
        says so, else `stop`. Adapters written before it existed may leave the parameter out:
        they are never given one (`takes_stop`).

        Yield a UsageReport as soon as the provider reports a count (before or between the
        deltas), so a stream that fails later still keeps it, and at most one RateLimitReport
        as soon as the response headers carry any rate-limit header (before the first delta).
        Raise a ProviderError subclass instead of ending early.
        """

    @abstractmethod
    def list_models(self) -> list[dict[str, Any]]:
        """Models the provider itself offers (may call the provider)."""

    @classmethod
    def takes_stop(cls) -> bool:
        """Whether this adapter's `_stream` accepts stop sequences."""
        return _takes_stop(cls._stream)

    def validate_model(self, model: str) -> bool:
        """Whether `model` is one this deployment allows for this provider (no network)."""
        return model in self.config.models

    def close(self) -> None:
        """Called when a changed config replaces this instance: release its connections as
        soon as no stream is using them (closing under a live stream would cut it)."""
        if self._inflight.request_close():
            self._close_resources()

    def release_resources(self) -> None:  # noqa: B027 - optional hook
        """Close connection pools and clients; adapters that hold some override this."""

    def _close_resources(self) -> None:
        self._inflight.mark_closed()
        self.release_resources()

    def generate_streaming_response(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[StreamEvent]:
        """Stream a reply, retrying retryable errors until the first delta has been yielded.

        After a delta has gone out a retry would repeat text, so later errors propagate.
        This is the only retry loop: SDK clients are built with their own retries off.

        UsageReports do not count as output for that decision. While an attempt may still be
        retried, its latest report is held back until its first delta (or its end, or its
        final error): the reports a consumer sees then all describe the attempt whose text
        it gets, never a mix with an earlier attempt that was retried. The counts of a
        retried attempt are dropped (as they were before reports existed); when no retry is
        left, reports go out at once, so a cancel before the first delta still has them.
        RateLimitReports pass straight through (one per attempt that got response headers):
        they describe the account's limits, which a retried attempt saw just the same.
        """
        extra: dict[str, Any] = {}
        if stop:
            if not self.takes_stop():
                raise ProviderBadRequest(
                    "this provider's adapter does not support stop sequences",
                    provider=self.config.name,
                )
            extra["stop"] = stop
        attempt = 0
        self._inflight.acquire()
        try:
            while True:
                text_started = False
                retry_left = attempt < self.config.max_retries
                held: UsageReport | None = None
                try:
                    for event in self._stream(messages, model, temperature, max_tokens, **extra):
                        if isinstance(event, RateLimitReport):
                            yield event  # not text and not this reply's counts: never held
                            continue
                        if isinstance(event, UsageReport) and retry_left and not text_started:
                            held = event
                            continue
                        if held is not None:
                            yield held
                            held = None
                        if isinstance(event, TextDelta):
                            text_started = True
                        yield event
                    if held is not None:  # an adapter that ended without its StreamEnd
                        yield held
                    return
                except ProviderError as exc:
                    if text_started or not exc.retryable or not retry_left:
                        if held is not None:
                            yield held
                        raise
                    time.sleep(retry_delay(attempt, exc.retry_after))
                    attempt += 1
        finally:
            if self._inflight.release():
                self._close_resources()

    def generate_chat_response(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> ChatResponse:
        parts: list[str] = []
        end: StreamEnd | None = None
        events = self.generate_streaming_response(messages, model, temperature, max_tokens, stop)
        for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, StreamEnd):
                end = event
        assert end is not None  # adapters raise StreamInterrupted instead of ending silently
        return ChatResponse(
            content="".join(parts),
            provider=self.config.name,
            model=model,
            usage=end.usage.as_dict(),
            finish_reason=end.finish_reason,
        )


@functools.cache
def _takes_stop(stream: Any) -> bool:
    return "stop" in inspect.signature(stream).parameters


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter; a server's retry-after wins when it is longer."""
    backoff = min(0.5 * (2**attempt), MAX_RETRY_SLEEP_SECONDS) * (0.5 + random.random() / 2)
    if retry_after is not None:
        return min(max(retry_after, backoff), MAX_RETRY_SLEEP_SECONDS)
    return backoff
