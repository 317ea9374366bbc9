"""Each adapter, through its real client library, against its wire-protocol stub over loopback."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import BaseProvider, Message, ProviderConfig, StreamEnd, TextDelta
from shared.providers.errors import (
    ContextTooLong,
    InvalidModel,
    MalformedChunk,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    StreamInterrupted,
)
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from shared.providers.openai_compatible import OpenAICompatibleProvider
from tests.stubs import StubServer, reply_text

KINDS = {
    "openai": (OpenAIProvider, "openai_stub"),
    "openai_compatible": (OpenAICompatibleProvider, "openai_stub"),
    "anthropic": (AnthropicProvider, "anthropic_stub"),
    "ollama": (OllamaProvider, "ollama_stub"),
}
SECRET = "sk-test-SUPERSECRET-0123456789abcdef"


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stub(kind: str, request: pytest.FixtureRequest) -> StubServer:
    return request.getfixturevalue(KINDS[kind][1])


def build(kind: str, stub: StubServer, **overrides: Any) -> BaseProvider:
    cls = KINDS[kind][0]
    fields: dict[str, Any] = {
        "name": kind,
        "adapter": kind,
        "api_key": SecretStr(SECRET),
        "api_endpoint": stub.base_url,
        "models": ("stub-model",),
        "timeout": 5.0,
        "max_retries": 0,
    }
    fields.update(overrides)
    return cls(ProviderConfig(**fields))


def conversation(text: str | None = None) -> list[Message]:
    # Distinct text per test: the stub's 429-then-ok counters are keyed by it.
    return [
        Message(role="system", content="You are terse."),
        Message(role="user", content=text or f"hello world {uuid.uuid4().hex}"),
    ]


def requests_for_model(stub: StubServer, model: str) -> int:
    return sum(1 for r in list(stub.requests) if r.body and r.json().get("model") == model)


# -- happy path ---------------------------------------------------------------------------


def test_full_reply_and_usage(kind: str, stub: StubServer) -> None:
    provider = build(kind, stub)
    response = provider.generate_chat_response(conversation(), "stub-model")
    assert response.content == reply_text(8)
    assert response.finish_reason == "stop"
    # prompt: "You are terse." (3 words) + "hello world <hex>" (3 words), as the stub counts.
    assert response.usage == {
        "prompt_tokens": 6,
        "completion_tokens": 8,
        "total_tokens": 14,
        "estimated": False,
        "prompt_estimated": False,
        "completion_estimated": False,
    }
    assert response.provider == kind


def test_streamed_reply_ends_with_one_stream_end(kind: str, stub: StubServer) -> None:
    provider = build(kind, stub)
    events = list(provider.generate_streaming_response(conversation(), "stub-model+tokens=5"))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert [d.text for d in deltas] == ["tok0", " tok1", " tok2", " tok3", " tok4"]
    assert isinstance(events[-1], StreamEnd)
    assert sum(isinstance(e, StreamEnd) for e in events) == 1
    assert events[-1].usage.completion_tokens == 5


def test_max_tokens_gives_length_finish(kind: str, stub: StubServer) -> None:
    response = build(kind, stub).generate_chat_response(conversation(), "stub-model", max_tokens=3)
    assert response.content == reply_text(3)
    assert response.finish_reason == "length"


# What each provider's API calls a reply ended by a stop sequence, in our vocabulary.
STOP_FINISH = {
    "openai": "stop",
    "openai_compatible": "stop",
    "anthropic": "stop_sequence",
    "ollama": "stop",
}


def test_stop_sequences_reach_the_provider_and_end_the_reply(kind: str, stub: StubServer) -> None:
    provider = build(kind, stub)
    events = list(
        provider.generate_streaming_response(conversation(), "stub-model", stop=[" tok3", "zz"])
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == reply_text(3)
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == STOP_FINISH[kind]
    assert end.usage.completion_tokens == 3 and not end.usage.estimated


def test_no_stop_sequences_sends_none(kind: str, stub: StubServer) -> None:
    build(kind, stub).generate_chat_response(conversation(), "stub-model")
    body = stub.last_body
    assert "stop" not in body and "stop_sequences" not in body
    assert "stop" not in (body.get("options") or {})


def test_list_and_validate_models(kind: str, stub: StubServer) -> None:
    provider = build(kind, stub)
    ids = [m["id"] for m in provider.list_models()]
    assert "stub-model" in ids
    assert provider.validate_model("stub-model")
    assert not provider.validate_model("gpt-nonexistent")


# -- faults -------------------------------------------------------------------------------


def test_401_is_authentication_error(kind: str, stub: StubServer) -> None:
    with pytest.raises(ProviderAuthenticationError) as info:
        build(kind, stub).generate_chat_response(conversation(), "fault-401")
    assert not info.value.retryable
    assert info.value.status_code == 401


def test_429_with_retry_after_is_retried_then_succeeds(kind: str, stub: StubServer) -> None:
    model = f"fault-429-then-ok+tag={kind}"
    provider = build(kind, stub, max_retries=2)
    started = time.monotonic()
    response = provider.generate_chat_response(conversation(), model)
    assert response.content == reply_text(8)
    assert requests_for_model(stub, model) == 2
    assert time.monotonic() - started >= 0.9  # waited for retry-after: 1


def test_429_exhausting_retries_raises_rate_limited(kind: str, stub: StubServer) -> None:
    with pytest.raises(ProviderRateLimited) as info:
        build(kind, stub).generate_chat_response(conversation(), "fault-429")
    assert info.value.retryable
    assert info.value.retry_after == 1.0


def test_500_is_unavailable_and_retryable(kind: str, stub: StubServer) -> None:
    with pytest.raises(ProviderUnavailable) as info:
        build(kind, stub).generate_chat_response(conversation(), "fault-500")
    assert info.value.retryable


def test_overloaded_is_retried_then_raises(kind: str, stub: StubServer) -> None:
    model = f"fault-overloaded+tag={kind}-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ProviderUnavailable):
        build(kind, stub, max_retries=1).generate_chat_response(conversation(), model)
    assert requests_for_model(stub, model) == 2


def test_stream_cut_raises_interrupted_after_deltas(kind: str, stub: StubServer) -> None:
    received: list[str] = []
    provider = build(kind, stub, max_retries=2)
    model = f"fault-cut+tag={uuid.uuid4().hex[:6]}"
    with pytest.raises(StreamInterrupted):
        for event in provider.generate_streaming_response(conversation(), model):
            assert not isinstance(event, StreamEnd)
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert received == ["tok0", " tok1", " tok2"]
    assert requests_for_model(stub, model) == 1  # text went out: never retried


def test_stream_without_final_event_is_interrupted(kind: str, stub: StubServer) -> None:
    with pytest.raises(StreamInterrupted):
        build(kind, stub).generate_chat_response(conversation(), "fault-no-done")


def test_midstream_error_event_is_mapped(kind: str, stub: StubServer) -> None:
    received: list[str] = []
    with pytest.raises(ProviderUnavailable):
        for event in build(kind, stub).generate_streaming_response(
            conversation(), "fault-midstream-error"
        ):
            assert not isinstance(event, StreamEnd)
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert len(received) == 3


def test_malformed_chunk_raises_after_the_deltas_before_it(kind: str, stub: StubServer) -> None:
    # The stub goes on streaming after the bad chunk: skipping it would end in a full reply.
    received: list[str] = []
    model = f"fault-malformed+tag={uuid.uuid4().hex[:6]}"
    provider = build(kind, stub, max_retries=2)
    with pytest.raises(MalformedChunk) as info:
        for event in provider.generate_streaming_response(conversation(), model):
            assert not isinstance(event, StreamEnd)
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert received == ["tok0", " tok1", " tok2"]
    assert isinstance(info.value, StreamInterrupted) and info.value.retryable
    assert info.value.kind == "malformed_chunk"
    assert SECRET not in str(info.value)
    assert requests_for_model(stub, model) == 1  # text went out: never retried


def test_malformed_chunk_before_any_text_is_retried(kind: str, stub: StubServer) -> None:
    model = f"fault-malformed+after=0+tag={uuid.uuid4().hex[:6]}"
    with pytest.raises(MalformedChunk):
        build(kind, stub, max_retries=1).generate_chat_response(conversation(), model)
    assert requests_for_model(stub, model) == 2


def test_server_that_never_answers_times_out(kind: str, stub: StubServer) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        build(kind, stub, timeout=0.5).generate_chat_response(conversation(), "fault-hang")
    assert time.monotonic() - started < 3


def test_stall_mid_stream_times_out(kind: str, stub: StubServer) -> None:
    with pytest.raises(ProviderTimeout):
        build(kind, stub, timeout=0.5).generate_chat_response(conversation(), "fault-stall")


def test_unknown_model_is_invalid_model(kind: str, stub: StubServer) -> None:
    with pytest.raises(InvalidModel) as info:
        build(kind, stub, max_retries=2).generate_chat_response(conversation(), "no-such-model")
    assert not info.value.retryable


def test_context_too_long(kind: str, stub: StubServer) -> None:
    with pytest.raises(ContextTooLong):
        build(kind, stub).generate_chat_response(conversation(), "fault-context")


def test_connection_refused_is_unavailable(kind: str, stub: StubServer) -> None:
    endpoint = "http://127.0.0.1:9/v1" if kind.startswith("openai") else "http://127.0.0.1:9"
    with pytest.raises(ProviderUnavailable):
        build(kind, stub, api_endpoint=endpoint).generate_chat_response(
            conversation(), "stub-model"
        )


# -- the API key never leaks --------------------------------------------------------------


def test_api_key_absent_from_errors_reprs_and_logs(
    kind: str, stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = build(kind, stub)
    caplog.set_level("DEBUG")
    failures: list[ProviderError] = []
    for model in ("fault-401", "fault-500", "no-such-model", "fault-cut", "fault-malformed"):
        with pytest.raises(ProviderError) as info:
            provider.generate_chat_response(conversation(), model)
        failures.append(info.value)
    texts = [str(provider), repr(provider), repr(provider.config), str(provider.config)]
    texts += [str(exc) for exc in failures] + [repr(exc) for exc in failures]
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text
        assert SECRET[8:20] not in text  # no partial (masked) echo either
