"""Costs are exact (issue 12, 2.13): a day of many small replies sums to the exact cost, not to
a sum of per-reply roundings, and the API shows costs in plain decimal notation."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Chat, Message, ProviderUsage
from shared.pricing import cost_of, format_cost, seed_price
from tests.helpers import register_and_login

# The cheapest priced model: one prompt token costs $0.0000001, below a 6-decimal rounding.
PROVIDER, MODEL = "openai", "gpt-4.1-nano"
REPLIES = 1000


def _tokens(i: int) -> tuple[int, int]:
    return i % 7 + 1, i % 4  # 1-7 prompt tokens, 0-3 completion tokens


def _exact_cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    # The published prices per million tokens, independently of shared/pricing.py's table.
    return (Decimal("0.10") * prompt_tokens + Decimal("0.40") * completion_tokens) / 1_000_000


def _user_id(client: object, headers: dict[str, str]) -> uuid.UUID:
    me = client.get("/users/me", headers=headers)  # type: ignore[attr-defined]
    assert me.status_code == 200, me.text
    return uuid.UUID(me.json()["id"])


def _add_usage(user_id: uuid.UUID, prompt_tokens: int, completion_tokens: int, **fields: object):
    return ProviderUsage(
        user_id=user_id,
        provider_name=PROVIDER,
        model_name=MODEL,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens_used=prompt_tokens + completion_tokens,
        cost=cost_of(seed_price(PROVIDER, MODEL), prompt_tokens, completion_tokens),
        status="completed",
        **fields,
    )


def test_a_thousand_tiny_replies_sum_to_their_exact_cost(client):
    headers = register_and_login(client)
    user_id = _user_id(client, headers)
    with session_scope() as session:
        session.add_all(_add_usage(user_id, *_tokens(i)) for i in range(REPLIES))
    exact = sum((_exact_cost(*_tokens(i)) for i in range(REPLIES)), Decimal(0))

    with session_scope() as session:
        stored = session.scalar(
            select(func.sum(ProviderUsage.cost)).where(ProviderUsage.user_id == user_id)
        )
    assert stored == exact

    usage = client.get("/usage", headers=headers)
    assert usage.status_code == 200, usage.text
    [day] = usage.json()["data"]
    assert (day["provider"], day["model"], day["requests"]) == (PROVIDER, MODEL, REPLIES)
    assert Decimal(day["cost"]) == exact


def test_format_cost_is_plain_decimal_notation():
    for cost, shown in [
        (Decimal("0"), "0.000000"),
        (Decimal("0E-12"), "0.000000"),
        (Decimal("3.5E-8"), "0.000000035"),
        (Decimal("0.000000100000"), "0.0000001"),
        (Decimal("12.5"), "12.500000"),
    ]:
        assert format_cost(cost) == shown


def test_the_api_shows_a_sub_micro_dollar_cost_in_plain_notation(client):
    headers = register_and_login(client)
    user_id = _user_id(client, headers)
    with session_scope() as session:
        chat = Chat(user_id=user_id, provider_name=PROVIDER, model_name=MODEL)
        session.add(chat)
        session.flush()
        reply = Message(
            chat_id=chat.id,
            role="assistant",
            status="completed",
            content="ok",
            provider_name=PROVIDER,
            model_name=MODEL,
            completed_at=dt.datetime.now(dt.UTC),
        )
        session.add(reply)
        session.flush()
        session.add(_add_usage(user_id, 1, 0, chat_id=chat.id, message_id=reply.id))
        reply_id = reply.id

    message = client.get(f"/messages/{reply_id}", headers=headers)
    assert message.status_code == 200, message.text
    usage = client.get("/usage", headers=headers)
    assert usage.status_code == 200, usage.text
    # Decimal's own str() would give "1.00000E-7" for a NUMERIC(20,12) value this small.
    shown = [message.json()["cost"], usage.json()["data"][0]["cost"]]
    assert all(isinstance(cost, str) and "e" not in cost.lower() for cost in shown), shown
    assert [Decimal(cost) for cost in shown] == [Decimal("0.0000001")] * 2


def test_the_api_shows_a_free_replys_zero_cost_in_plain_notation(client):
    headers = register_and_login(client)
    user_id = _user_id(client, headers)
    with session_scope() as session:
        session.add(
            ProviderUsage(
                user_id=user_id,
                provider_name="echo",
                model_name="echo-1",
                prompt_tokens=5,
                completion_tokens=3,
                cost=cost_of(seed_price("echo", "echo-1"), 5, 3),
                status="completed",
            )
        )
    usage = client.get("/usage", headers=headers)
    assert usage.status_code == 200, usage.text
    cost = usage.json()["data"][0]["cost"]
    # A NUMERIC(20,12) zero comes back as Decimal("0E-12").
    assert "e" not in cost.lower() and Decimal(cost) == 0, cost
