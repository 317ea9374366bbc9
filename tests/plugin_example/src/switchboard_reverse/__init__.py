"""A Switchboard provider plugin: streams the last user message back, word order reversed.

Everything a real adapter needs is here: subclass `BaseProvider`, implement `_stream` (one
attempt: TextDelta items, then exactly one StreamEnd) and `list_models`, raise `ProviderError`
subclasses on failure, and optionally configure yourself from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    estimate_prompt_tokens,
)
from shared.providers.errors import InvalidModel

MODELS = ("reverse-1",)


class ReverseProvider(BaseProvider):
    name = "reverse"
    display_name = "Reverse (example plugin)"
    is_demo = True

    @classmethod
    def default_config(cls, settings: Any) -> ProviderConfig | None:
        # Plugins read their own settings; the app's Settings is passed for shared values.
        if os.environ.get("REVERSE_ENABLED", "true").lower() == "false":
            return None
        return ProviderConfig(
            name="reverse",
            adapter="reverse",
            models=MODELS,
            default_model=MODELS[0],
            timeout=settings.PROVIDER_TIMEOUT_SECONDS,
            max_retries=settings.PROVIDER_MAX_RETRIES,
        )

    def _stream(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
    ) -> Iterator[StreamEvent]:
        if model not in MODELS:
            raise InvalidModel(f"unknown model {model!r}", provider=self.config.name)
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        words = list(reversed(last_user.split()))
        for index, word in enumerate(words):
            yield TextDelta(word if index == 0 else " " + word)
        yield StreamEnd(
            Usage(estimate_prompt_tokens(messages), len(words), estimated=True),
            finish_reason="stop",
        )

    def list_models(self) -> list[dict[str, Any]]:
        return [{"id": model} for model in MODELS]
