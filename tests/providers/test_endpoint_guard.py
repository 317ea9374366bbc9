"""The SSRF check runs when a worker connects, on the addresses the host resolves to then.

A name accepted when the endpoint was saved can later resolve to 169.254.169.254 (DNS
rebinding); each adapter, through its own client library, must refuse to connect there. DNS is
simulated by replacing `shared.providers.endpoints.resolve` (our resolver hook, not the SDKs');
sockets actually opened are observed through Python's audit events, without patching anything.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers import endpoints
from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import BaseProvider, Message, ProviderConfig
from shared.providers.endpoints import check_endpoint_url
from shared.providers.errors import ProviderBadRequest
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from shared.providers.openai_compatible import OpenAICompatibleProvider
from shared.settings import get_settings
from tests.stubs import StubServer, reply_text

ADAPTERS: dict[str, tuple[type[BaseProvider], str]] = {
    "openai": (OpenAIProvider, "openai_stub"),
    "openai_compatible": (OpenAICompatibleProvider, "openai_stub"),
    "anthropic": (AnthropicProvider, "anthropic_stub"),
    "ollama": (OllamaProvider, "ollama_stub"),
}
SECRET = "sk-test-GUARDCANARY-0123456789abcdef"
REBINDING_NAME = "models.rebind.test"

# Every socket.connect() of this process, while a test is recording (audit hooks cannot be
# removed, so one hook serves every test).
_connects: list[Any] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _connects is not None:
        _connects.append(args[1])


sys.addaudithook(_audit)


@pytest.fixture
def connects() -> Iterator[list[Any]]:
    global _connects
    _connects = []
    try:
        yield _connects
    finally:
        _connects = None


@pytest.fixture(params=list(ADAPTERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stub(kind: str, request: pytest.FixtureRequest) -> StubServer:
    return request.getfixturevalue(ADAPTERS[kind][1])


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What made-up names resolve to, as the guard will see them; `calls` counts lookups."""
    answers: dict[str, list[str]] = {}
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[tuple[Any, Any, int, str, tuple[Any, ...]]]:
        calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in answers[host]
        ]

    monkeypatch.setattr(endpoints, "resolve", resolve)
    answers["__calls__"] = calls  # type: ignore[assignment]
    return answers


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """PROVIDER_ENDPOINTS_ALLOW_PRIVATE=false, as a shared deployment sets it."""
    monkeypatch.setenv("PROVIDER_ENDPOINTS_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    assert get_settings().PROVIDER_ENDPOINTS_ALLOW_PRIVATE is False
    yield
    monkeypatch.delenv("PROVIDER_ENDPOINTS_ALLOW_PRIVATE")
    get_settings.cache_clear()


def build(kind: str, endpoint: str) -> BaseProvider:
    return ADAPTERS[kind][0](
        ProviderConfig(
            name=kind,
            adapter=kind,
            api_key=SecretStr(SECRET),
            api_endpoint=endpoint,
            models=("stub-model",),
            timeout=5.0,
            max_retries=2,
        )
    )


def renamed(stub: StubServer, host: str) -> str:
    """The stub's base URL with `host` in place of 127.0.0.1."""
    return stub.base_url.replace("127.0.0.1", host, 1)


def conversation() -> list[Message]:
    return [Message(role="user", content=f"where does this go {uuid.uuid4().hex}")]


def call(provider: BaseProvider, what: str) -> object:
    if what == "chat":
        return provider.generate_chat_response(conversation(), "stub-model")
    return provider.list_models()


@pytest.mark.parametrize("what", ["chat", "list_models"])
def test_name_rebound_to_metadata_is_refused_when_the_worker_connects(
    kind: str, stub: StubServer, fake_dns: dict[str, list[str]], connects: list[Any], what: str
) -> None:
    endpoint = renamed(stub, REBINDING_NAME)
    # When the admin saved it, the name pointed at the (loopback) server: accepted.
    fake_dns[REBINDING_NAME] = ["127.0.0.1"]
    assert check_endpoint_url(endpoint, allow_private=True, resolve_names=True)

    fake_dns[REBINDING_NAME] = ["169.254.169.254"]
    fake_dns["__calls__"].clear()
    seen_before = stub.request_count
    with pytest.raises(ProviderBadRequest) as info:
        call(build(kind, endpoint), what)

    error = info.value
    assert str(error) == (
        f"{kind}: endpoint refused: the host resolves to a cloud metadata address"
    )
    assert not error.retryable
    assert fake_dns["__calls__"] == [REBINDING_NAME]  # not retried: the endpoint must change
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert not any("169.254" in str(address) for address in connects)
    assert connects == []
    assert stub.request_count == seen_before


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["fe80::1"], "a link-local address"),
        (["::ffff:169.254.169.254"], "a cloud metadata address"),
        (["169.254.170.2"], "a link-local address"),
        (["0.0.0.0"], "a 'this network' address"),
        # 127.0.0.1 first would work, but a name that also points at metadata is not trusted.
        (["127.0.0.1", "169.254.169.254"], "a cloud metadata address"),
    ],
)
def test_every_resolved_address_is_checked(
    kind: str,
    stub: StubServer,
    fake_dns: dict[str, list[str]],
    connects: list[Any],
    addresses: list[str],
    reason: str,
) -> None:
    fake_dns[REBINDING_NAME] = addresses
    with pytest.raises(
        ProviderBadRequest, match=f"endpoint refused: the host resolves to {reason}"
    ):
        call(build(kind, renamed(stub, REBINDING_NAME)), "chat")
    assert connects == []


@pytest.mark.parametrize(
    "host", ["0xa9fea9fe", "2852039166", "169.254.43518", "[::ffff:a9fe:a9fe]", "metadata"]
)
def test_literal_metadata_endpoints_are_refused_at_connect_too(
    kind: str, stub: StubServer, fake_dns: dict[str, list[str]], connects: list[Any], host: str
) -> None:
    # An endpoint that never went through the save-time check (an old row, a plugin's config).
    with pytest.raises(ProviderBadRequest, match="endpoint refused: the host is a cloud metadata"):
        call(build(kind, renamed(stub, host)), "chat")
    assert connects == []
    assert fake_dns["__calls__"] == []  # refused before any lookup


def test_name_resolving_to_the_loopback_server_works_through_the_guard(
    kind: str, stub: StubServer, fake_dns: dict[str, list[str]], connects: list[Any]
) -> None:
    fake_dns["llm.internal.test"] = ["127.0.0.1"]
    response = build(kind, renamed(stub, "llm.internal.test")).generate_chat_response(
        conversation(), "stub-model"
    )
    assert response.content == reply_text(8)
    assert [address[0] for address in connects] == ["127.0.0.1"]
    # The client still addressed the server by name: only the socket went to the checked IP.
    assert stub.last_request is not None
    assert stub.last_request.headers["host"] == f"llm.internal.test:{stub.port}"


def test_first_reachable_checked_address_is_used(
    kind: str, stub: StubServer, fake_dns: dict[str, list[str]], connects: list[Any]
) -> None:
    # ::1 and 127.0.0.1 are both checked; the stub listens on IPv4 only, so ::1 is refused by
    # the kernel and the next address serves, as socket.create_connection would do.
    fake_dns["dual.internal.test"] = ["::1", "127.0.0.1"]
    response = build(kind, renamed(stub, "dual.internal.test")).generate_chat_response(
        conversation(), "stub-model"
    )
    assert response.content == reply_text(8)
    assert [address[0] for address in connects] == ["::1", "127.0.0.1"]


def test_private_setting_false_refuses_the_loopback_server(
    kind: str,
    stub: StubServer,
    fake_dns: dict[str, list[str]],
    connects: list[Any],
    private_refused: None,
) -> None:
    fake_dns["llm.internal.test"] = ["127.0.0.1"]
    for endpoint, refusal in [
        (renamed(stub, "llm.internal.test"), "the host resolves to a loopback address"),
        (stub.base_url, "the host is a loopback address"),
    ]:
        with pytest.raises(ProviderBadRequest) as info:
            call(build(kind, endpoint), "chat")
        assert f"endpoint refused: {refusal}" in str(info.value)
        assert "PROVIDER_ENDPOINTS_ALLOW_PRIVATE is false" in str(info.value)
    assert connects == []


def test_unknown_name_is_an_ordinary_connection_failure(
    kind: str, stub: StubServer, fake_dns: dict[str, list[str]], connects: list[Any]
) -> None:
    # Not a refusal: DNS may come back, so the usual retryable "could not connect" applies.
    provider = build(kind, renamed(stub, "nowhere.test"))
    with pytest.raises(Exception) as info:
        provider.generate_chat_response(conversation(), "stub-model")
    assert not isinstance(info.value, ProviderBadRequest)
    assert getattr(info.value, "retryable", False)
    assert connects == []
