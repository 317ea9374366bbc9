"""Provider HTTP clients never follow redirects (issue 12, defect 2.11).

An upstream (or a proxy in front of it) answering 307 could otherwise bounce a worker's POST,
with the API key and the user's prompt, to an internal address. The stubs send redirects to
`REDIRECT_TARGET` on themselves, so a followed redirect shows up in their request log.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import BaseProvider, Message, ProviderConfig
from shared.providers.errors import ProviderRedirectRefused
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from shared.providers.openai_compatible import OpenAICompatibleProvider
from tests.stubs import StubServer
from tests.stubs._faults import REDIRECT_TARGET

ADAPTERS: dict[str, tuple[type[BaseProvider], str]] = {
    "openai": (OpenAIProvider, "openai_stub"),
    "openai_compatible": (OpenAICompatibleProvider, "openai_stub"),
    "anthropic": (AnthropicProvider, "anthropic_stub"),
    "ollama": (OllamaProvider, "ollama_stub"),
}
MESSAGES = [Message(role="user", content="where does this go")]


@pytest.fixture(params=list(ADAPTERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stub(kind: str, request: pytest.FixtureRequest) -> StubServer:
    return request.getfixturevalue(ADAPTERS[kind][1])


def build(kind: str, endpoint: str, **overrides: Any) -> BaseProvider:
    fields: dict[str, Any] = {
        "name": kind,
        "adapter": kind,
        "api_key": SecretStr("sk-test-redirect-0123456789"),
        "api_endpoint": endpoint,
        "timeout": 5.0,
        "max_retries": 2,
    }
    fields.update(overrides)
    return ADAPTERS[kind][0](ProviderConfig(**fields))


def bounced(stub: StubServer) -> str:
    """The stub's base URL under /bounce, where every request is answered with a 307."""
    origin = f"http://127.0.0.1:{stub.port}"
    return stub.base_url.replace(origin, f"{origin}/bounce", 1)


def test_redirected_chat_is_refused_and_not_retried(kind: str, stub: StubServer) -> None:
    model = f"fault-redirect+tag={kind}-{uuid.uuid4().hex[:6]}"
    provider = build(kind, stub.base_url)
    with pytest.raises(ProviderRedirectRefused) as info:
        provider.generate_chat_response(MESSAGES, model)
    assert info.value.status_code == 307
    assert not info.value.retryable
    assert "redirect refused" in str(info.value)
    assert REDIRECT_TARGET not in str(info.value)  # the Location may name an internal host
    assert stub.requests_for(REDIRECT_TARGET) == []
    assert sum(1 for r in list(stub.requests) if r.body and r.json()["model"] == model) == 1


@pytest.mark.parametrize("call", ["chat", "list_models"])
def test_endpoint_that_redirects_everything_is_never_followed(
    kind: str, stub: StubServer, call: str
) -> None:
    provider = build(kind, bounced(stub))
    with pytest.raises(ProviderRedirectRefused):
        if call == "chat":
            provider.generate_chat_response(MESSAGES, "stub-model")
        else:
            provider.list_models()
    assert stub.requests_for(REDIRECT_TARGET) == []
