"""What a stub does for a request, decided by the model name (see tests/stubs/README.md).

The model name is the one knob that travels unchanged through API, queue and worker, so faults
can be triggered end to end: "fault-401", "fault-cut+tokens=20", "stub-model+delay=5"...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAULTS = frozenset(
    {
        "401",
        "403",
        "429",
        "429-then-ok",
        "quota",
        "billing",
        "500",
        "overloaded",
        "529",
        "cut",
        "malformed",
        "midstream-error",
        "hang",
        "stall",
        "no-usage",
        "no-done",
        "context",
        "bad-request",
        "usage-then-error",
        "redirect",
    }
)
# Faults that strike mid-stream, after `Plan.fault_after` tokens (tunable `+after=N`).
MIDSTREAM_FAULTS = frozenset({"cut", "malformed", "midstream-error", "stall", "usage-then-error"})
TOKENS_BEFORE_FAULT = 3
# The limits the OpenAI and Anthropic stubs advertise in their rate-limit headers, sent only
# when the model name asks for them with `+remaining=N` (N = remaining requests).
RATE_LIMIT_REQUESTS = 100
RATE_LIMIT_TOKENS = 100_000
# Where `fault-redirect` (and any path under /bounce) sends clients: a client that follows
# redirects shows up in `stub.requests_for(...)` under this path.
REDIRECT_TARGET = "/redirect-target/internal"


@dataclass(frozen=True)
class Plan:
    model: str  # the full name as sent
    base: str  # without "+key=value" tunables
    fault: str | None
    tokens: int
    delay_ms: float
    fault_after: int = TOKENS_BEFORE_FAULT
    prompt_tokens: int | None = None  # `+prompt=N`: the prompt count to report, else words
    # `+remaining=N`: send rate-limit headers with N requests remaining; None: no such headers
    remaining_requests: int | None = None

    def prompt_count(self, *texts: Any) -> int:
        return self.prompt_tokens if self.prompt_tokens is not None else word_count(*texts)


def plan_for(model: str, default_tokens: int, default_delay_ms: float) -> Plan:
    base, *params = model.split("+")
    tunables: dict[str, str] = dict(p.split("=", 1) for p in params if "=" in p)
    fault = base.removeprefix("fault-") if base.startswith("fault-") else None
    return Plan(
        model=model,
        base=base,
        fault=fault if fault in FAULTS else None,
        tokens=int(tunables.get("tokens", default_tokens)),
        delay_ms=float(tunables.get("delay", default_delay_ms)),
        fault_after=int(tunables.get("after", TOKENS_BEFORE_FAULT)),
        prompt_tokens=int(tunables["prompt"]) if "prompt" in tunables else None,
        remaining_requests=int(tunables["remaining"]) if "remaining" in tunables else None,
    )


def is_known(plan: Plan, models: tuple[str, ...]) -> bool:
    return plan.base.startswith(("stub-", "fault-")) or plan.base in models


def reply_pieces(count: int) -> list[str]:
    """The streamed text pieces: "tok0", " tok1", " tok2"... (one piece = one token)."""
    return [f"tok{i}" if i == 0 else f" tok{i}" for i in range(count)]


def reply_text(count: int) -> str:
    return "".join(reply_pieces(count))


def stop_sequences(value: Any) -> list[str]:
    """A request's stop sequences: OpenAI's `stop` may be one string, the others a list."""
    if isinstance(value, str):
        return [value]
    return [s for s in value or () if isinstance(s, str) and s]


def count_before_stop(count: int, stop: list[str]) -> tuple[int, str | None]:
    """How many of `count` pieces go out when the reply ends at a stop sequence, and which
    sequence ended it: the reply stops before the piece in which one first appears."""
    text = ""
    for index, piece in enumerate(reply_pieces(count)):
        text += piece
        for sequence in stop:
            if sequence in text:
                return index, sequence
    return count, None


def word_count(*texts: Any) -> int:
    """Prompt tokens as the stubs report them: whitespace-separated words of every message."""
    total = 0
    for text in texts:
        if isinstance(text, str):
            total += len(text.split())
        elif isinstance(text, list):  # content blocks: [{"type": "text", "text": ...}]
            total += sum(
                len(str(block.get("text", "")).split()) for block in text if isinstance(block, dict)
            )
    return total


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""
