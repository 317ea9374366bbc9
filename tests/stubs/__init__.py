"""Wire-protocol stub servers for OpenAI, Anthropic and Ollama (see README.md here).

In-process:  `with OpenAIStub().serve_in_thread() as base_url: ...`
As a process: `python -m tests.stubs.openai_stub --port 8001 --tokens 20 --token-delay-ms 5`
"""

from __future__ import annotations

import importlib
from typing import Any

from tests.stubs._faults import reply_pieces, reply_text, word_count
from tests.stubs._server import StubServer

# Imported lazily so `python -m tests.stubs.openai_stub` does not import itself twice.
_LAZY = {
    "AnthropicStub": "tests.stubs.anthropic_stub",
    "OllamaStub": "tests.stubs.ollama_stub",
    "OpenAIStub": "tests.stubs.openai_stub",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "AnthropicStub",
    "OllamaStub",
    "OpenAIStub",
    "StubServer",
    "reply_pieces",
    "reply_text",
    "word_count",
]
