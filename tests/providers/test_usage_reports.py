"""Usage the provider reported survives a stream that errors (issue 12, defect 2.7).

Each adapter yields a `UsageReport` as soon as the provider reports counts; `merge_usage`
turns the last one into the stored usage, estimating only what the provider never reported.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    UsageReport,
    estimate_prompt_tokens,
    estimate_tokens,
    merge_usage,
)
from shared.providers.echo import EchoProvider
from shared.providers.errors import ProviderError, ProviderUnavailable
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from shared.providers.openai_compatible import OpenAICompatibleProvider
from tests.stubs import StubServer, reply_text

ADAPTERS: dict[str, tuple[type[BaseProvider], str]] = {
    "openai": (OpenAIProvider, "openai_stub"),
    "openai_compatible": (OpenAICompatibleProvider, "openai_stub"),
    "anthropic": (AnthropicProvider, "anthropic_stub"),
    "ollama": (OllamaProvider, "ollama_stub"),
}


def build(kind: str, stub: StubServer, **overrides: Any) -> BaseProvider:
    fields: dict[str, Any] = {
        "name": kind,
        "adapter": kind,
        "api_key": SecretStr("sk-test-usage-0123456789"),
        "api_endpoint": stub.base_url,
        "timeout": 5.0,
        "max_retries": 0,
    }
    fields.update(overrides)
    return ADAPTERS[kind][0](ProviderConfig(**fields))


def conversation() -> list[Message]:
    return [
        Message(role="system", content="You are terse."),
        Message(role="user", content=f"count my tokens {uuid.uuid4().hex}"),
    ]


def consume_until_error(
    provider: BaseProvider, messages: list[Message], model: str
) -> tuple[list[StreamEvent], ProviderError]:
    """What a consumer (the worker) has seen when the stream raises."""
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        for event in provider.generate_streaming_response(messages, model):
            events.append(event)
    return events, info.value


def last_report(events: list[StreamEvent]) -> UsageReport | None:
    reports = [e for e in events if isinstance(e, UsageReport)]
    return reports[-1] if reports else None


def streamed_text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- the reproductions from the issue -----------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 2])
def test_anthropic_error_after_message_start_keeps_its_input_tokens(
    anthropic_stub: StubServer, max_retries: int
) -> None:
    # message_start says input_tokens=28, three tokens of text follow, then `event: error`.
    provider = build("anthropic", anthropic_stub, max_retries=max_retries)
    messages = conversation()
    events, error = consume_until_error(
        provider, messages, f"fault-midstream-error+prompt=28+tag={uuid.uuid4().hex[:6]}"
    )
    assert isinstance(error, ProviderUnavailable)
    assert streamed_text(events) == reply_text(3)
    assert last_report(events) == UsageReport(prompt_tokens=28, completion_tokens=None)

    usage = merge_usage(last_report(events), messages, streamed_text(events))
    assert usage.prompt_tokens == 28  # not the estimate
    assert estimate_prompt_tokens(messages) != 28
    assert usage.completion_tokens == estimate_tokens(reply_text(3))
    assert (usage.prompt_estimated, usage.completion_estimated) == (False, True)
    assert usage.estimated


@pytest.mark.parametrize("kind", ["openai_compatible", "openai"])
def test_openai_usage_chunk_then_error_chunk_keeps_reported_usage(
    openai_stub: StubServer, kind: str
) -> None:
    # Three tokens, the usage chunk (prompt 1234, completion 3), then `data: {"error": ...}`.
    provider = build(kind, openai_stub)
    messages = conversation()
    events, error = consume_until_error(provider, messages, "fault-usage-then-error+prompt=1234")
    assert isinstance(error, ProviderUnavailable)
    assert streamed_text(events) == reply_text(3)

    usage = merge_usage(last_report(events), messages, streamed_text(events))
    assert (usage.prompt_tokens, usage.completion_tokens) == (1234, 3)
    assert not usage.estimated


def test_report_of_a_retried_attempt_is_not_passed_on_twice(anthropic_stub: StubServer) -> None:
    # Both attempts get message_start (input 28) and then an error before any text.
    model = f"fault-midstream-error+after=0+prompt=28+tag={uuid.uuid4().hex[:6]}"
    provider = build("anthropic", anthropic_stub, max_retries=1)
    events, error = consume_until_error(provider, conversation(), model)
    assert isinstance(error, ProviderUnavailable)
    attempts = [r for r in list(anthropic_stub.requests) if r.body and r.json()["model"] == model]
    assert len(attempts) == 2
    assert events == [UsageReport(prompt_tokens=28, completion_tokens=None)]


# -- successful streams -------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_last_report_before_stream_end_matches_its_usage(
    kind: str, request: pytest.FixtureRequest
) -> None:
    stub = request.getfixturevalue(ADAPTERS[kind][1])
    events = list(build(kind, stub).generate_streaming_response(conversation(), "stub-model"))
    end = events[-1]
    assert isinstance(end, StreamEnd)
    # "You are terse." + "count my tokens <hex>": 7 words, as the stubs count prompt tokens.
    assert last_report(events) == UsageReport(prompt_tokens=7, completion_tokens=8)
    assert end.usage == Usage(7, 8)
    assert not end.usage.estimated


def test_ollama_without_counts_estimates_both_and_says_so(ollama_stub: StubServer) -> None:
    messages = conversation()
    events = list(
        build("ollama", ollama_stub).generate_streaming_response(messages, "fault-no-usage")
    )
    assert last_report(events) is None
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage == Usage(
        estimate_prompt_tokens(messages), estimate_tokens(reply_text(8)), estimated=True
    )
    assert end.usage.prompt_estimated and end.usage.completion_estimated


def test_echo_says_its_prompt_count_is_an_estimate() -> None:
    echo = EchoProvider(ProviderConfig(name="echo", adapter="echo", models=("echo",)))
    messages = [Message(role="user", content="one two three")]
    response = echo.generate_chat_response(messages, "echo")
    assert response.usage == {
        "prompt_tokens": estimate_prompt_tokens(messages),
        "completion_tokens": 4,  # "Echo:", "one", "two", "three": the pieces it streamed
        "total_tokens": estimate_prompt_tokens(messages) + 4,
        "estimated": True,
        "prompt_estimated": True,
        "completion_estimated": False,
    }


# -- the helpers --------------------------------------------------------------------------


def test_merge_usage_estimates_only_what_was_not_reported() -> None:
    messages = [Message(role="user", content="a" * 40)]
    text = "b" * 20
    assert merge_usage(None, messages, text) == Usage(
        estimate_prompt_tokens(messages), 5, prompt_estimated=True, completion_estimated=True
    )
    assert merge_usage(UsageReport(28, None), messages, text) == Usage(
        28, 5, completion_estimated=True
    )
    assert merge_usage(UsageReport(None, 9), messages, text) == Usage(
        estimate_prompt_tokens(messages), 9, prompt_estimated=True
    )
    # A reported zero is a count, not a missing one.
    assert merge_usage(UsageReport(0, 0), messages, text) == Usage(0, 0)


def test_usage_constructor_keeps_its_two_argument_and_estimated_forms() -> None:
    assert Usage(3, 4).estimated is False
    assert Usage(3, 4).total_tokens == 7
    both = Usage(3, 4, estimated=True)
    assert (both.prompt_estimated, both.completion_estimated, both.estimated) == (True, True, True)
    assert Usage(3, 4, completion_estimated=True).estimated is True
