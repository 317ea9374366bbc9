"""The conversation sent to providers: well-formed turns, bounded by the context window."""

from __future__ import annotations

import uuid

from workers.prompt import HistoryRow, build_prompt


def _user(text: str) -> HistoryRow:
    return HistoryRow(uuid.uuid4(), "user", text, None, None)


def _reply(to: HistoryRow, text: str, status: str = "completed") -> HistoryRow:
    return HistoryRow(uuid.uuid4(), "assistant", text, status, to.id)


def _turns(messages: list) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


def test_a_failed_or_silently_cancelled_turn_is_left_out_with_its_question():
    q1, q2, q3, q4 = _user("one"), _user("two"), _user("three"), _user("four")
    rows = [
        q1,
        _reply(q1, "first answer"),
        q2,
        _reply(q2, "", "failed"),
        q3,
        _reply(q3, "", "cancelled"),
        q4,
    ]
    prompt = build_prompt("be brief", rows, q4.id, context_tokens=8192, reserved_for_reply=512)
    assert _turns(prompt) == [
        ("system", "be brief"),
        ("user", "one"),
        ("assistant", "first answer"),
        ("user", "four"),
    ]
    roles = [m.role for m in prompt]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))


def test_a_cancelled_reply_that_said_something_is_kept():
    q1, q2 = _user("one"), _user("two")
    rows = [q1, _reply(q1, "partial", "cancelled"), q2]
    prompt = build_prompt(None, rows, q2.id, context_tokens=8192, reserved_for_reply=512)
    assert _turns(prompt) == [("user", "one"), ("assistant", "partial"), ("user", "two")]


def test_oldest_turns_are_dropped_to_fit_the_context_keeping_the_system_prompt():
    rows: list[HistoryRow] = []
    for i in range(50):
        question = _user(f"question {i} " + "x" * 400)  # ~100 tokens a turn
        rows += [question, _reply(question, f"answer {i} " + "y" * 400)]
    last = _user("the question")
    rows.append(last)
    prompt = build_prompt(
        "system rules", rows, last.id, context_tokens=2048, reserved_for_reply=512
    )
    assert prompt[0].content == "system rules"
    assert prompt[-1].content == "the question"
    kept = [m.content.split(" ")[1] for m in prompt[1:-1] if m.role == "user"]
    # The newest turns survive, contiguous and in order, and the prompt fits.
    assert kept == [str(i) for i in range(50 - len(kept), 50)]
    assert 0 < len(kept) < 50
    assert sum(len(m.content) / 4 + 4 for m in prompt) <= 2048 - 512


def test_replies_stored_before_linking_answer_the_question_before_them():
    q1, q2 = _user("old question"), _user("new question")
    legacy = HistoryRow(uuid.uuid4(), "assistant", "old answer", "completed", None)
    prompt = build_prompt(None, [q1, legacy, q2], q2.id, context_tokens=8192, reserved_for_reply=0)
    assert _turns(prompt) == [
        ("user", "old question"),
        ("assistant", "old answer"),
        ("user", "new question"),
    ]
