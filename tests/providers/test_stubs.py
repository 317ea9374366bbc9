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
from tests.stubs import reply_text

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
