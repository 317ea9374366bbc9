"""The stubs themselves: concurrency, the standalone process mode, protocol framing."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import BaseProvider, Message, ProviderConfig
from shared.providers.ollama import OllamaProvider
from shared.providers.openai import OpenAIProvider
from tests.stubs import AnthropicStub, OllamaStub, OpenAIStub, reply_text

ROOT = Path(__file__).resolve().parents[2]
CONCURRENT = 200


@pytest.mark.parametrize(
    "cls,stub_name",
    [
        (OpenAIProvider, "openai_stub"),
        (AnthropicProvider, "anthropic_stub"),
        (OllamaProvider, "ollama_stub"),
    ],
)
def test_hundreds_of_concurrent_streams_through_one_adapter(
    cls: type[BaseProvider], stub_name: str, request: pytest.FixtureRequest
) -> None:
    stub = request.getfixturevalue(stub_name)
    provider = cls(
        ProviderConfig(
            name="c",
            adapter="c",
            api_key=SecretStr("k"),
            api_endpoint=stub.base_url,
            timeout=10,
            max_retries=0,
        )
    )

    def one(i: int) -> str:
        messages = [Message(role="user", content=f"request {i}")]
        return provider.generate_chat_response(messages, "stub-model+tokens=5+delay=20").content

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(one, range(CONCURRENT)))
    assert results == [reply_text(5)] * CONCURRENT
    provider.close()


def test_openai_sse_framing(openai_stub) -> None:  # type: ignore[no-untyped-def]
    response = requests.post(
        f"{openai_stub.base_url}/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={
            "model": "stub-model+tokens=2",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a b c"}],
        },
        timeout=5,
    )
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_anthropic_event_sequence(anthropic_stub) -> None:  # type: ignore[no-untyped-def]
    response = requests.post(
        f"{anthropic_stub.base_url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": "stub-model+tokens=2",
            "stream": True,
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "a b c"}],
        },
        timeout=5,
    )
    names = [
        block.split("\n")[0].removeprefix("event: ")
        for block in response.text.split("\n\n")
        if block
    ]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_stub_runs_as_a_standalone_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs.ollama_stub", "--port", "0", "--tokens", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        response = requests.post(
            f"{url}/api/chat",
            json={"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3
    finally:
        process.terminate()
        process.wait(5)


def test_malformed_chunk_in_each_wire_framing(
    openai_stub: OpenAIStub, anthropic_stub: AnthropicStub, ollama_stub: OllamaStub
) -> None:
    messages = [{"role": "user", "content": "a b c"}]
    model = "fault-malformed+tokens=5"
    openai_body = requests.post(
        f"{openai_stub.base_url}/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"model": model, "stream": True, "messages": messages},
        timeout=5,
    ).text.split("\n\n")
    # the role chunk, tok0..tok2, the bad line, then the stream goes on to [DONE]
    assert openai_body[4] == "data: {not json"
    assert openai_body[-2] == "data: [DONE]"

    anthropic_events = requests.post(
        f"{anthropic_stub.base_url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": model, "stream": True, "max_tokens": 10, "messages": messages},
        timeout=5,
    ).text.split("\n\n")
    bad = anthropic_events[6].split("\n")  # message_start, block start, ping, 3 deltas
    assert bad[0] == "event: content_block_delta"
    with pytest.raises(ValueError):
        json.loads(bad[1].removeprefix("data: "))
    assert anthropic_events[-2].startswith("event: message_stop")

    ollama_lines = requests.post(
        f"{ollama_stub.base_url}/api/chat",
        json={"model": model, "messages": messages},
        timeout=5,
    ).text.splitlines()
    with pytest.raises(ValueError):
        json.loads(ollama_lines[3])
    assert json.loads(ollama_lines[-1])["done"] is True


def test_rate_limit_headers_only_when_asked(
    openai_stub: OpenAIStub, anthropic_stub: AnthropicStub
) -> None:
    def headers(url: str, model: str, **extra: str) -> dict[str, str]:
        response = requests.post(
            url,
            headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01", **extra},
            json={
                "model": model,
                "stream": True,
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "a"}],
            },
            timeout=5,
        )
        return {k.lower(): v for k, v in response.headers.items()}

    openai_url = f"{openai_stub.base_url}/chat/completions"
    anthropic_url = f"{anthropic_stub.base_url}/v1/messages"
    limited = headers(openai_url, "stub-model+remaining=9")
    assert limited["x-ratelimit-remaining-requests"] == "9"
    assert limited["x-ratelimit-limit-requests"] == "100"
    assert limited["x-ratelimit-reset-requests"] == "1s"
    limited = headers(anthropic_url, "stub-model+remaining=9")
    assert limited["anthropic-ratelimit-requests-remaining"] == "9"
    assert limited["anthropic-ratelimit-requests-limit"] == "100"
    assert limited["anthropic-ratelimit-requests-reset"].endswith("Z")
    for url in (openai_url, anthropic_url):
        assert not [k for k in headers(url, "stub-model") if "ratelimit" in k]
