"""A demo provider: no network, no key. It streams back the last user message, word by word."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from shared.providers.base import (
    BaseProvider,
    Message,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    estimate_prompt_tokens,
)


class EchoProvider(BaseProvider):
    name = "echo"
    display_name = "Echo (demo: repeats your message, no LLM)"
    is_demo = True

    def _stream(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
    ) -> Iterator[StreamEvent]:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        words = f"Echo: {last_user}".split(" ")
        delay = float(self.config.option("token_delay_ms", 0.0)) / 1000
        limit = max_tokens if max_tokens is not None else len(words)
        for index, word in enumerate(words[:limit]):
            if delay:
                time.sleep(delay)
            yield TextDelta(word if index == 0 else " " + word)
        finish = "length" if limit < len(words) else "stop"
        # Echo has no tokenizer: the prompt is our ~4-characters estimate, while the reply's
        # "tokens" are exactly the words it streamed.
        usage = Usage(
            estimate_prompt_tokens(messages), min(limit, len(words)), prompt_estimated=True
        )
        yield StreamEnd(usage, finish_reason=finish)

    def list_models(self) -> list[dict[str, Any]]:
        return [{"id": m, "display_name": self.display_name} for m in self.config.models]
