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
        stop: list[str] | None = None,
    ) -> Iterator[StreamEvent]:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        words = f"Echo: {last_user}".split(" ")
        delay = float(self.config.option("token_delay_ms", 0.0)) / 1000
        limit = max_tokens if max_tokens is not None else len(words)
        finish = "length" if limit < len(words) else "stop"
        sent = ""
        for index, word in enumerate(words[:limit]):
            piece = word if index == 0 else " " + word
            if stop and (cut := _stop_at(sent + piece, stop)) is not None:
                # The text before the sequence still goes out, as a model's would.
                partial = piece[: cut - len(sent)]
                if partial:
                    yield TextDelta(partial)
                limit, finish = index + bool(partial), "stop_sequence"
                break
            if delay:
                time.sleep(delay)
            sent += piece
            yield TextDelta(piece)
        # Echo has no tokenizer: the prompt is our ~4-characters estimate, while the reply's
        # "tokens" are exactly the words it streamed.
        usage = Usage(
            estimate_prompt_tokens(messages), min(limit, len(words)), prompt_estimated=True
        )
        yield StreamEnd(usage, finish_reason=finish)

    def list_models(self) -> list[dict[str, Any]]:
        return [{"id": m, "display_name": self.display_name} for m in self.config.models]


def _stop_at(text: str, stop: list[str]) -> int | None:
    """Where the first stop sequence in `text` begins, if any does."""
    found = [at for sequence in stop if sequence and (at := text.find(sequence)) >= 0]
    return min(found) if found else None
