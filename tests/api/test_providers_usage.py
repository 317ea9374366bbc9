from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select

from shared.db import session_scope
from shared.models import Chat, Message, ProviderUsage, User
from tests.helpers import register_and_login


def test_providers_list_models_and_prices(client):
    headers = register_and_login(client)
    providers = {p["name"]: p for p in client.get("/providers", headers=headers).json()}
    assert {"echo", "ollama", "anthropic", "openai"} <= set(providers)
    assert providers["echo"]["is_demo"] is True and providers["openai"]["is_demo"] is False
    assert providers["openai"]["is_enabled"] is True  # a key is configured in the tests
    assert providers["openai"]["default_model"] == "gpt-3.5-turbo"
    models = {m["id"]: m for m in client.get("/providers/openai/models", headers=headers).json()}
    assert models["gpt-4"]["input_cost_per_1k_tokens"] == "0.03"
    assert models["stub-model"]["input_cost_per_1k_tokens"] is None  # unpriced, not zero
    assert models["gpt-3.5-turbo"]["is_default"] is True
    assert client.get("/providers/nope/models", headers=headers).status_code == 404
    assert client.get("/providers").status_code == 401


def _add_usage(
    email: str, provider: str, model: str, prompt: int, completion: int, cost: str | None
) -> None:
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == email))
        chat = Chat(user_id=user.id, provider_name=provider, model_name=model)
        session.add(chat)
        session.flush()
        reply = Message(chat_id=chat.id, role="assistant", status="completed")
        session.add(reply)
        session.flush()
        session.add(
            ProviderUsage(
                user_id=user.id,
                chat_id=chat.id,
                message_id=reply.id,
                provider_name=provider,
                model_name=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                tokens_used=prompt + completion,
                cost=Decimal(cost) if cost else None,
                status="completed",
            )
        )


def test_usage_per_provider_model_and_day_is_per_user(client):
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    headers = register_and_login(client, email)
    other = f"{uuid.uuid4().hex[:8]}@example.com"
    register_and_login(client, other)
    _add_usage(email, "openai", "gpt-4", 10, 5, "0.000600")
    _add_usage(email, "openai", "gpt-4", 20, 5, "0.000900")
    _add_usage(email, "ollama", "llama3", 7, 3, None)
    _add_usage(other, "openai", "gpt-4", 1000, 1000, "0.090000")

    report = client.get("/usage", headers=headers).json()
    rows = {(r["provider"], r["model"]): r for r in report["data"]}
    assert set(rows) == {("openai", "gpt-4"), ("ollama", "llama3")}
    gpt4 = rows[("openai", "gpt-4")]
    assert (
        gpt4["requests"],
        gpt4["prompt_tokens"],
        gpt4["completion_tokens"],
        gpt4["total_tokens"],
    ) == (2, 30, 10, 40)
    assert Decimal(gpt4["cost"]) == Decimal("0.0015")
    assert rows[("ollama", "llama3")]["cost"] is None
    assert client.get("/usage?days=0", headers=headers).status_code == 422
