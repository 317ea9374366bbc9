"""The conversation sent to the provider: well-formed turns that fit the model's context.

Strict chat templates (and some APIs) reject two user turns in a row, so a user message whose
reply failed, or was cancelled before it said anything, is left out together with that reply.
The oldest turns are dropped first when the history does not fit; the system prompt and the
message being answered are always kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from shared.models import ReplyStatus
from shared.providers.base import Message as ProviderMessage
from shared.providers.base import estimate_tokens

# Per-message framing, as in estimate_prompt_tokens.
FRAMING_TOKENS = 4


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: uuid.UUID
    role: str
    content: str
    status: str | None
    reply_to_id: uuid.UUID | None


def _answered(reply: HistoryRow) -> bool:
    return reply.status == ReplyStatus.completed or (
        reply.status == ReplyStatus.cancelled and bool(reply.content)
    )


def _cost(text: str) -> int:
    return estimate_tokens(text) + FRAMING_TOKENS


def build_prompt(
    system: str | None,
    rows: Sequence[HistoryRow],
    question_id: uuid.UUID | None,
    *,
    context_tokens: int,
    reserved_for_reply: int,
) -> list[ProviderMessage]:
    """`rows` are the chat's messages before the reply, oldest first."""
    users = [row for row in rows if row.role == "user"]
    question = next((row for row in users if row.id == question_id), users[-1] if users else None)
    replies: dict[uuid.UUID, HistoryRow] = {}
    pending_user: HistoryRow | None = None
    for row in rows:
        if row.role == "user":
            pending_user = row
        elif row.role == "assistant" and _answered(row):
            # Rows from before replies were linked answer the user message just before them.
            key = row.reply_to_id or (pending_user.id if pending_user else None)
            if key is not None:
                replies.setdefault(key, row)
    pairs = [
        (user, replies[user.id])
        for user in users
        if user.id in replies and (question is None or user.id != question.id)
    ]

    budget = context_tokens - reserved_for_reply - _cost(question.content if question else "")
    if system:
        budget -= _cost(system)
    kept: list[tuple[HistoryRow, HistoryRow]] = []
    for user, reply in reversed(pairs):
        budget -= _cost(user.content) + _cost(reply.content)
        if budget < 0:
            break
        kept.append((user, reply))
    kept.reverse()

    messages = [ProviderMessage(role="system", content=system)] if system else []
    for user, reply in kept:
        messages.append(ProviderMessage(role="user", content=user.content))
        messages.append(ProviderMessage(role="assistant", content=reply.content))
    if question is not None:
        messages.append(ProviderMessage(role="user", content=question.content))
    return messages
