"""Provider tests: no database or Redis, only the loopback stubs from tests/stubs."""

from __future__ import annotations

from tests.stubs.fixtures import anthropic_stub, ollama_stub, openai_stub

__all__ = ["anthropic_stub", "ollama_stub", "openai_stub"]
