"""The conversation a claim sends to the provider, read from the database (issue 12, 2.12):
well-formed turns after failed replies, and bounded by the model's configured context length."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.db import session_scope
from shared.models import Message, SystemPrompt
from shared.models.base import utcnow
from shared.models.provider import ProviderConfigRow, ProviderModel
from shared.providers.base import estimate_tokens
from shared.settings import get_settings
from tests.helpers import add_user_and_chat
from workers.generation import _claim


class ChatBuilder:
    """Messages of one echo chat, each a second after the one before (history is ordered by
    creation time)."""

    def __init__(self, system_prompt: str | None = None) -> None:
        self._clock = utcnow() - dt.timedelta(days=1)
        with session_scope() as session:
            chat = add_user_and_chat(session)
            if system_prompt is not None:
                session.add(
                    SystemPrompt(
                        user_id=chat.user_id, name="rules", content=system_prompt, is_default=True
                    )
                )
            self.chat_id = chat.id

    def _add(self, **fields: object) -> uuid.UUID:
        self._clock += dt.timedelta(seconds=1)
        with session_scope() as session:
            message = Message(chat_id=self.chat_id, created_at=self._clock, **fields)
            session.add(message)
            session.flush()
            return message.id

    def turn(self, question: str, answer: str, status: str = "completed") -> uuid.UUID:
        """A question and its reply; returns the reply's id."""
        question_id = self._add(role="user", content=question)
        return self._add(
            role="assistant",
            content=answer,
            status=status,
            provider_name="echo",
            model_name="echo-1",
            reply_to_id=question_id,
            error="provider said no" if status == "failed" else None,
        )

    def ask(self, question: str) -> uuid.UUID:
        """The question being answered now; returns its queued reply's id."""
        return self.turn(question, "", status="queued")


def _turns(reply_id: uuid.UUID) -> list[tuple[str, str]]:
    claim = _claim(reply_id, get_settings())
    assert claim is not None
    return [(m.role, m.content) for m in claim.messages]


def _well_formed(turns: list[tuple[str, str]]) -> bool:
    roles = [role for role, _ in turns if role != "system"]
    return roles[-1:] == ["user"] and all(a != b for a, b in zip(roles, roles[1:], strict=False))


@pytest.mark.usefixtures("db_clean")
def test_a_failed_reply_does_not_leave_two_user_turns_in_a_row():
    chat = ChatBuilder()
    chat.turn("first question", "first answer")
    chat.turn("this one failed", "", status="failed")
    chat.turn("this one was cancelled before a word", "", status="cancelled")
    chat.turn("cut short", "partial answer", status="cancelled")
    reply_id = chat.ask("the question now")
    turns = _turns(reply_id)
    assert _well_formed(turns), turns
    assert turns == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "cut short"),
        ("assistant", "partial answer"),
        ("user", "the question now"),
    ]


@pytest.mark.usefixtures("db_clean")
def test_a_long_chat_is_cut_to_the_models_context_length_keeping_the_system_prompt():
    context_length = 1024
    with session_scope() as session:
        provider = ProviderConfigRow(provider_name="echo")
        session.add(provider)
        session.flush()
        session.add(
            ProviderModel(
                provider_id=provider.id, model_name="echo-1", max_context_length=context_length
            )
        )
    chat = ChatBuilder(system_prompt="answer in one word")
    for i in range(60):  # ~200 tokens a turn: 12,000 in all, far beyond the window
        chat.turn(f"question {i} " + "q" * 400, f"answer {i} " + "a" * 400)
    reply_id = chat.ask("the question now")

    turns = _turns(reply_id)
    assert turns[0] == ("system", "answer in one word")
    assert turns[-1] == ("user", "the question now")
    assert _well_formed(turns), turns
    kept = [int(text.split()[1]) for role, text in turns[:-1] if role == "user"]
    # The newest turns, in order, none skipped; the oldest dropped.
    assert kept and kept == list(range(60 - len(kept), 60))
    prompt_tokens = sum(estimate_tokens(text) for _, text in turns)
    assert prompt_tokens < context_length
