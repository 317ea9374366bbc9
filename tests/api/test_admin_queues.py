"""`GET /admin/queues`: each catalog provider's broker queue depth (the real Celery queue in
Redis) and its replies queued and running in PostgreSQL; 200 with `broker_up: false` when the
broker does not answer. Who may call it: tests/api/test_admin_users.py walks every /admin route."""

from __future__ import annotations

import uuid
from typing import Any

from shared.settings import get_settings
from tests.api.test_admin_users import make_admin
from tests.helpers import register_and_login
from workers.generation import _claim


def queues(client: Any, admin: dict[str, str]) -> dict[str, Any]:
    answer = client.get("/admin/queues", headers=admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def by_provider(overview: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["provider"]: row for row in overview["data"]}


def submit(client: Any, headers: dict[str, str], chat_id: str, provider: str) -> str:
    accepted = client.post(
        f"/chats/{chat_id}/messages", json={"message": "hi", "provider": provider}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["reply_id"]


def test_queues_show_broker_depth_and_queued_and_running_replies(client):
    admin, _ = make_admin(client)
    before = queues(client, admin)
    assert before["broker_up"] is True
    assert before["flower_url"] == "http://127.0.0.1:5555"
    rows = by_provider(before)
    # Every provider of the catalog, disabled or idle ones included.
    assert {"echo", "ollama", "anthropic", "openai"} <= set(rows)
    assert all(row["queue"] == row["provider"] for row in rows.values())
    assert all(isinstance(row["depth"], int) for row in rows.values())
    assert all((row["queued"], row["running"]) == (0, 0) for row in rows.values())

    user = register_and_login(client)
    chat_id = client.post("/chats", json={}, headers=user).json()["id"]
    echo_replies = [submit(client, user, chat_id, "echo") for _ in range(3)]
    submit(client, user, chat_id, "anthropic")
    # One echo reply is claimed as a worker claims it: running in the database. No worker
    # runs here, so nothing pops the broker's jobs.
    assert _claim(uuid.UUID(echo_replies[0]), get_settings()) is not None

    after = by_provider(queues(client, admin))
    assert after["echo"]["depth"] == rows["echo"]["depth"] + 3  # no worker pops them here
    assert (after["echo"]["queued"], after["echo"]["running"]) == (2, 1)
    assert after["anthropic"]["depth"] == rows["anthropic"]["depth"] + 1
    assert (after["anthropic"]["queued"], after["anthropic"]["running"]) == (1, 0)
    assert (after["openai"]["queued"], after["openai"]["running"]) == (0, 0)


def test_an_unreachable_broker_gives_null_depths_not_a_500(client, set_env):
    admin, _ = make_admin(client)
    user = register_and_login(client)
    chat_id = client.post("/chats", json={}, headers=user).json()["id"]
    submit(client, user, chat_id, "echo")
    # Port 9 (discard): nothing listens, so the broker refuses the connection.
    set_env(REDIS_URL="redis://127.0.0.1:9/0", FLOWER_URL="https://flower.example.test/")
    overview = queues(client, admin)
    assert overview["broker_up"] is False
    assert overview["flower_url"] == "https://flower.example.test/"
    rows = by_provider(overview)
    assert all(row["depth"] is None for row in rows.values())
    assert (rows["echo"]["queued"], rows["echo"]["running"]) == (1, 0)  # the database answers
