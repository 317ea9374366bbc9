"""Adapter-specific details of what goes over the wire, checked on the stubs' recorded requests."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import Message, ProviderConfig
from shared.providers.errors import ProviderQuotaExceeded
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from shared.providers.openai_compatible import OpenAICompatibleProvider
from tests.stubs import AnthropicStub, OllamaStub, OpenAIStub, reply_text

MESSAGES = [
    Message(role="system", content="Be brief."),
    Message(role="system", content="Answer in English."),
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
    Message(role="user", content="second question"),
]


def config(adapter: str, endpoint: str, **extra: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "name": adapter,
        "adapter": adapter,
        "api_key": SecretStr("sk-test-key-123456"),
        "api_endpoint": endpoint,
        "timeout": 5.0,
        "max_retries": 0,
    }
    fields.update(extra)
    return ProviderConfig(**fields)  # type: ignore[arg-type]


def test_anthropic_sends_system_top_level_and_max_tokens(anthropic_stub: AnthropicStub) -> None:
    provider = AnthropicProvider(
        config("anthropic", anthropic_stub.base_url, options=(("default_max_tokens", 321),))
    )
    response = provider.generate_chat_response(MESSAGES, "stub-model")
    body = anthropic_stub.last_body
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 321
    assert body["stream"] is True
    assert response.usage is not None and response.usage["prompt_tokens"] == 11


def test_anthropic_explicit_max_tokens_and_temperature(anthropic_stub: AnthropicStub) -> None:
    provider = AnthropicProvider(config("anthropic", anthropic_stub.base_url))
    provider.generate_chat_response(MESSAGES, "stub-model", temperature=0.2, max_tokens=50)
    body = anthropic_stub.last_body
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2


@pytest.mark.parametrize("model", ["fault-quota", "fault-billing"])
def test_anthropic_spend_limits_are_quota_errors(anthropic_stub: AnthropicStub, model: str) -> None:
    provider = AnthropicProvider(config("anthropic", anthropic_stub.base_url, max_retries=3))
    with pytest.raises(ProviderQuotaExceeded):
        provider.generate_chat_response(MESSAGES, model)


def test_openai_asks_for_usage_in_stream(openai_stub: OpenAIStub) -> None:
    provider = OpenAIProvider(config("openai", openai_stub.base_url, max_tokens=99))
    provider.generate_chat_response(MESSAGES, "stub-model", temperature=0.1)
    body = openai_stub.last_body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 99
    assert body["temperature"] == 0.1
    assert [m["role"] for m in body["messages"]][:2] == ["system", "system"]


def test_openai_insufficient_quota_is_not_retried(openai_stub: OpenAIStub) -> None:
    model = f"fault-quota+tag={uuid.uuid4().hex[:6]}"
    provider = OpenAIProvider(config("openai", openai_stub.base_url, max_retries=3))
    with pytest.raises(ProviderQuotaExceeded) as info:
        provider.generate_chat_response(MESSAGES, model)
    assert not info.value.retryable
    assert (
        sum(1 for r in list(openai_stub.requests) if r.body and r.json().get("model") == model) == 1
    )


def test_compatible_server_without_usage_is_estimated(openai_stub: OpenAIStub) -> None:
    provider = OpenAICompatibleProvider(config("vllm", openai_stub.base_url))
    response = provider.generate_chat_response(MESSAGES, "fault-no-usage")
    assert response.content == reply_text(8)
    assert response.usage is not None
    assert response.usage["estimated"] is True
    assert response.usage["prompt_tokens"] > 0
    assert response.usage["completion_tokens"] > 0


def test_compatible_server_without_key_never_gets_the_openai_key(
    openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-openai-key-must-not-leak")
    provider = OpenAICompatibleProvider(config("local", openai_stub.base_url, api_key=None))
    provider.generate_chat_response(MESSAGES, "stub-model")
    assert "sk-real-openai-key" not in openai_stub.last_request.headers["authorization"]


def test_ollama_request_shape_and_counts(ollama_stub: OllamaStub) -> None:
    provider = OllamaProvider(config("ollama", ollama_stub.base_url, api_key=None))
    response = provider.generate_chat_response(MESSAGES, "stub-model", max_tokens=4)
    body = ollama_stub.last_body
    assert body["stream"] is True
    assert body["options"]["num_predict"] == 4
    assert "authorization" not in ollama_stub.last_request.headers
    assert response.usage == {
        "prompt_tokens": 11,
        "completion_tokens": 4,
        "total_tokens": 15,
        "estimated": False,
        "prompt_estimated": False,
        "completion_estimated": False,
    }


def test_ollama_without_counts_is_estimated(ollama_stub: OllamaStub) -> None:
    provider = OllamaProvider(config("ollama", ollama_stub.base_url))
    response = provider.generate_chat_response(MESSAGES, "fault-no-usage")
    assert response.usage is not None and response.usage["estimated"] is True


@pytest.mark.parametrize(
    "cls,stub_name",
    [
        (OpenAIProvider, "openai_stub"),
        (AnthropicProvider, "anthropic_stub"),
        (OllamaProvider, "ollama_stub"),
    ],
)
def test_adapter_reused_across_calls_shares_one_client(
    cls: type, stub_name: str, request: pytest.FixtureRequest
) -> None:
    stub = request.getfixturevalue(stub_name)
    provider = cls(config("x", stub.base_url))
    client_before = vars(provider).get("_client") or vars(provider).get("_session")
    for _ in range(3):
        provider.generate_chat_response(MESSAGES, "stub-model+tokens=2")
    assert (vars(provider).get("_client") or vars(provider).get("_session")) is client_before
