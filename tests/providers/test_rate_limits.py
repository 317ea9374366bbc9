"""Rate-limit headers become one `RateLimitReport` before the first delta.

Through the real SDKs against the stubs (`+remaining=N` makes them send the headers), plus the
header parsers on their own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers._http import parse_duration, rate_limit_report, seconds_until
from shared.providers.anthropic import AnthropicProvider, anthropic_rate_limits
from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    RateLimitReport,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from shared.providers.errors import MalformedChunk
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider, openai_rate_limits
from shared.providers.openai_compatible import OpenAICompatibleProvider
from tests.stubs import StubServer, reply_text
from tests.stubs._faults import RATE_LIMIT_REQUESTS, RATE_LIMIT_TOKENS

ADAPTERS: dict[str, tuple[type[BaseProvider], str]] = {
    "openai": (OpenAIProvider, "openai_stub"),
    "openai_compatible": (OpenAICompatibleProvider, "openai_stub"),
    "anthropic": (AnthropicProvider, "anthropic_stub"),
    "ollama": (OllamaProvider, "ollama_stub"),
}
WITH_HEADERS = ("openai", "openai_compatible", "anthropic")
PROMPT_WORDS = 3  # "rate limits <hex>", as the stubs count prompt tokens


def build(kind: str, request: pytest.FixtureRequest, **overrides: Any) -> BaseProvider:
    cls, fixture = ADAPTERS[kind]
    stub: StubServer = request.getfixturevalue(fixture)
    fields: dict[str, Any] = {
        "name": kind,
        "adapter": kind,
        "api_key": SecretStr("sk-test-limits-0123456789"),
        "api_endpoint": stub.base_url,
        "timeout": 5.0,
        "max_retries": 0,
    }
    fields.update(overrides)
    return cls(ProviderConfig(**fields))


def prompt() -> list[Message]:
    return [Message(role="user", content=f"rate limits {uuid.uuid4().hex}")]


def stream(provider: BaseProvider, model: str) -> list[StreamEvent]:
    return list(provider.generate_streaming_response(prompt(), model))


# -- through the SDKs ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", WITH_HEADERS)
def test_one_report_before_the_first_delta(kind: str, request: pytest.FixtureRequest) -> None:
    events = stream(build(kind, request), "stub-model+remaining=42")
    reports = [e for e in events if isinstance(e, RateLimitReport)]
    assert len(reports) == 1
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert events.index(reports[0]) < first_delta
    report = reports[0]
    assert report.remaining_requests == 42
    assert report.limit_requests == RATE_LIMIT_REQUESTS
    assert report.remaining_tokens == RATE_LIMIT_TOKENS - PROMPT_WORDS
    assert report.limit_tokens == RATE_LIMIT_TOKENS
    assert report.reset_seconds is not None
    if kind == "anthropic":
        # An RFC 3339 time to the second, at most 1 s after the stub sent it.
        assert 0.0 <= report.reset_seconds <= 1.0
    else:
        assert report.reset_seconds == 1.0  # "1s"; the tokens reset ("20ms") is not exhausted
    # The text and the end are what they are without the headers.
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == reply_text(8)
    assert isinstance(events[-1], StreamEnd)


@pytest.mark.parametrize("kind", WITH_HEADERS)
def test_no_requests_left_is_reported_as_zero(kind: str, request: pytest.FixtureRequest) -> None:
    reports = [
        e
        for e in stream(build(kind, request), "stub-model+remaining=0")
        if isinstance(e, RateLimitReport)
    ]
    assert [r.remaining_requests for r in reports] == [0]


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_no_headers_no_report(kind: str, request: pytest.FixtureRequest) -> None:
    # Ollama never sends any; the other stubs send none without `+remaining`.
    events = stream(build(kind, request), "stub-model")
    assert not any(isinstance(e, RateLimitReport) for e in events)


@pytest.mark.parametrize("kind", WITH_HEADERS)
def test_retried_attempts_each_pass_their_report_through(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # Malformed before any text: retried once; each attempt's headers come out, none is text.
    provider = build(kind, request, max_retries=1)
    model = f"fault-malformed+after=0+remaining=7+tag={uuid.uuid4().hex[:6]}"
    events: list[StreamEvent] = []
    with pytest.raises(MalformedChunk):
        for event in provider.generate_streaming_response(prompt(), model):
            events.append(event)
    assert not any(isinstance(e, TextDelta) for e in events)
    assert [e.remaining_requests for e in events if isinstance(e, RateLimitReport)] == [7, 7]


@pytest.mark.parametrize("kind", WITH_HEADERS)
def test_non_streaming_reply_ignores_the_report(kind: str, request: pytest.FixtureRequest) -> None:
    response = build(kind, request).generate_chat_response(prompt(), "stub-model+remaining=3")
    assert response.content == reply_text(8)


# -- header parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("59.56s", 59.56),
        ("2", 2.0),  # a plain number of seconds, as some compatible servers send
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "1s2", "m", "s1", "nan", "1d"])
def test_parse_duration_rejects_what_is_not_a_duration(text: str | None) -> None:
    assert parse_duration(text) is None


def test_seconds_until() -> None:
    past = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert seconds_until(past) == 0.0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    remaining = seconds_until(future)
    assert remaining is not None and 3500 < remaining <= 3600
    assert seconds_until("not a time") is None
    assert seconds_until("2024-01-01T00:00:00") is None  # no offset: not RFC 3339


def test_openai_headers() -> None:
    report = openai_rate_limits(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-limit-tokens": "30000000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    # The tokens are exhausted, so their reset is the one that matters.
    assert report == RateLimitReport(9999, 10000, 0, 30000000, 360.0)
    assert openai_rate_limits({"content-type": "text/event-stream"}) is None


def test_anthropic_headers_retry_after_wins() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "retry-after": "5",
    }
    report = anthropic_rate_limits(headers)
    assert report == RateLimitReport(0, 50, None, None, 5.0)
    headers.pop("retry-after")
    report = anthropic_rate_limits(headers)
    assert report is not None and report.reset_seconds is not None
    assert 0 < report.reset_seconds <= 30
    assert anthropic_rate_limits({}) is None


def test_unreadable_values_are_none() -> None:
    report = rate_limit_report(
        limit_requests="lots",
        remaining_requests="-1",
        limit_tokens="1000.0",
        remaining_tokens=None,
        reset_requests=None,
        reset_tokens=None,
    )
    assert report == RateLimitReport(None, None, None, 1000, None)
    assert (
        rate_limit_report(
            limit_requests="x",
            remaining_requests=None,
            limit_tokens=None,
            remaining_tokens=None,
            reset_requests=None,
            reset_tokens=None,
        )
        is None
    )
