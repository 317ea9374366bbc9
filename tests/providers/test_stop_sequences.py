"""Stop sequences in the adapters that need no stub: the echo demo, and a plugin written
before `stop` existed (the wire adapters are in test_adapters.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from shared.providers.echo import EchoProvider
from shared.providers.errors import ProviderBadRequest


class OldPlugin(BaseProvider):
    """A plugin's `_stream` with the four parameters it had before stop sequences."""

    name = "old"

    def _stream(
        self, messages: list[Message], model: str, temperature: float | None, max_tokens: int | None
    ) -> Iterator[StreamEvent]:
        yield TextDelta("hi")
        yield StreamEnd(Usage(1, 1), "stop")

    def list_models(self) -> list[dict[str, Any]]:
        return []


def ask(provider: BaseProvider, text: str, **options: Any) -> tuple[str, StreamEnd]:
    events = list(
        provider.generate_streaming_response([Message(role="user", content=text)], "m", **options)
    )
    end = events[-1]
    assert isinstance(end, StreamEnd)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), end


def echo() -> EchoProvider:
    return EchoProvider(ProviderConfig(name="echo", adapter="echo", models=("m",)))


def test_echo_ends_where_a_stop_sequence_begins() -> None:
    text, end = ask(echo(), "one two three four", stop=["thr", "four"])
    assert text == "Echo: one two "
    assert end.finish_reason == "stop_sequence"
    assert end.usage.completion_tokens == 4  # "Echo:", " one", " two" and the partial " "


def test_echo_without_a_match_is_a_plain_stop() -> None:
    text, end = ask(echo(), "one two", stop=["zzz"])
    assert text == "Echo: one two"
    assert end.finish_reason == "stop" and end.usage.completion_tokens == 3


def test_a_sequence_at_a_word_boundary_sends_no_empty_delta() -> None:
    provider = echo()
    events = list(
        provider.generate_streaming_response(
            [Message(role="user", content="one two")], "m", stop=[" two"]
        )
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Echo:", " one"]


def test_an_adapter_without_stop_refuses_sequences_and_works_without() -> None:
    provider = OldPlugin(ProviderConfig(name="old", adapter="old"))
    assert not provider.takes_stop() and echo().takes_stop()
    with pytest.raises(ProviderBadRequest, match="does not support stop sequences"):
        ask(provider, "x", stop=["y"])
    assert ask(provider, "x")[0] == "hi"
    assert ask(provider, "x", stop=[])[0] == "hi"
