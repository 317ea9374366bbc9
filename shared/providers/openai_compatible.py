"""Any server speaking OpenAI's Chat Completions API: vLLM, LM Studio, llama.cpp, Groq...

Configured without code (`OPENAI_COMPATIBLE_PROVIDERS`), one named instance per server. Many of
these servers send no usage chunk; then usage is estimated (~4 characters a token) and marked
`estimated=True`, never stored as a silent zero.
"""

from __future__ import annotations

from shared.providers.openai import OpenAIProvider


class OpenAICompatibleProvider(OpenAIProvider):
    name = "openai_compatible"
    display_name = "OpenAI-compatible server"
    estimate_missing_usage = True
