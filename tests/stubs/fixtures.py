"""Pytest fixtures serving each stub on a free loopback port from a background thread.

Use from a conftest: `from tests.stubs.fixtures import openai_stub, anthropic_stub, ollama_stub`.
Each fixture yields the running stub; `stub.base_url` is what goes into `api_endpoint`
(OpenAI's includes "/v1"), `stub.last_body` the last JSON request body it received.
Session-scoped: fault counters are keyed by message text, so tests use distinct messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stubs.anthropic_stub import AnthropicStub
from tests.stubs.ollama_stub import OllamaStub
from tests.stubs.openai_stub import OpenAIStub


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub()
    with stub.serve_in_thread():
        yield stub


@pytest.fixture(scope="session")
def anthropic_stub() -> Iterator[AnthropicStub]:
    stub = AnthropicStub()
    with stub.serve_in_thread():
        yield stub


@pytest.fixture(scope="session")
def ollama_stub() -> Iterator[OllamaStub]:
    stub = OllamaStub()
    with stub.serve_in_thread():
        yield stub
