"""Routing through the API, on real PostgreSQL and Redis: A/B arms of new chats, chats on a
pool, and per-message fallbacks. Routing rows are written as an admin write makes them
(catalog lock and version bump), then the API process's directory reloads them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from shared.db import session_scope
from shared.models import Chat, Message
from shared.models.routing import Experiment, FallbackChain, PoolDeployment
from shared.providers.directory import (
    bump_version,
    current_catalog,
    lock_catalog,
    provider_directory,
    read_stamp,
)
from tests.helpers import register_and_login
from tests.routing.conftest import tolerance

NEW_CHATS = 400
SHARE = 0.3

Write = Callable[..., Any]


@pytest.fixture
def routing_rows(client: Any) -> Iterator[Write]:
    """Add routing rows in one catalog write; the API's directory reloads them. Removed at
    the end (with a reload), so no later test's chats join this test's experiment."""

    def write(*rows: object) -> list[int]:
        with session_scope() as session:
            bump_version(session, lock_catalog(session))
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]  # type: ignore[attr-defined]
        _reload()
        return ids

    yield write
    with session_scope() as session:
        catalog = lock_catalog(session)
        for table in (Experiment, PoolDeployment, FallbackChain):
            session.execute(delete(table))
        bump_version(session, catalog)
    provider_directory.refresh()


def _reload() -> None:
    """This process's directory holds the tables as committed (its watcher thread may have
    reloaded them first)."""
    provider_directory.refresh()
    with session_scope() as session:
        assert current_catalog().stamp == read_stamp(session)


def _experiment(**changes: object) -> Experiment:
    values: dict[str, object] = {
        "name": "echo-2 trial",
        "control_provider": "echo",
        "control_model": "echo-1",
        "variant_provider": "echo",
        "variant_model": "echo-2",
        "variant_share": SHARE,
    }
    return Experiment(**(values | changes))


def _submit(client: Any, headers: dict[str, str], chat_id: str, **body: object) -> Any:
    return client.post(
        f"/chats/{chat_id}/messages", json={"message": "hello"} | body, headers=headers
    )


def _count(model: type) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- A/B arms -------------------------------------------------------------------------------


def test_new_chats_join_the_variant_by_its_share_and_stay_in_their_arm(
    client, routing_rows
) -> None:
    [experiment_id] = routing_rows(_experiment())
    headers = register_and_login(client)
    arms: dict[str, str] = {}
    for _ in range(NEW_CHATS):
        created = client.post("/chats", json={}, headers=headers)  # the default: the control
        assert created.status_code == 201, created.text
        chat = created.json()
        arm = chat["experiment_arm"]
        assert arm in ("control", "variant")
        # The chat's provider and model are its arm's.
        expected = "echo-2" if arm == "variant" else "echo-1"
        assert (chat["provider_name"], chat["model_name"]) == ("echo", expected)
        arms[chat["id"]] = arm
    variant = sum(1 for arm in arms.values() if arm == "variant")
    assert abs(variant / NEW_CHATS - SHARE) <= tolerance(SHARE, NEW_CHATS)

    for chat_id, arm in arms.items():
        read = client.get(f"/chats/{chat_id}", headers=headers).json()
        assert read["experiment_arm"] == arm
        assert read["model_name"] == ("echo-2" if arm == "variant" else "echo-1")
    with session_scope() as session:
        assert set(session.scalars(select(Chat.experiment_id))) == {experiment_id}

    # A message goes to the chat's arm.
    for arm in ("control", "variant"):
        chat_id = next(c for c, a in arms.items() if a == arm)
        sent = _submit(client, headers, chat_id)
        assert sent.status_code == 202, sent.text
        assert (sent.json()["provider"], sent.json()["model"]) == (
            "echo",
            "echo-2" if arm == "variant" else "echo-1",
        )


def test_a_chat_keeps_its_arm_after_the_experiment_ends(client, routing_rows) -> None:
    [experiment_id] = routing_rows(_experiment(variant_share=1.0))
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    assert (chat["experiment_arm"], chat["model_name"]) == ("variant", "echo-2")
    with session_scope() as session:
        bump_version(session, lock_catalog(session))
        session.get(Experiment, experiment_id).is_active = False  # type: ignore[union-attr]
    _reload()
    read = client.get(f"/chats/{chat['id']}", headers=headers).json()
    assert (read["experiment_arm"], read["model_name"]) == ("variant", "echo-2")
    # New chats no longer join it.
    later = client.post("/chats", json={}, headers=headers).json()
    assert (later["experiment_arm"], later["model_name"]) == (None, "echo-1")


def test_chats_bound_elsewhere_join_no_arm(client, routing_rows) -> None:
    routing_rows(_experiment(variant_share=1.0))
    headers = register_and_login(client)
    chat = client.post("/chats", json={"provider": "openai", "model": "gpt-4"}, headers=headers)
    assert chat.status_code == 201
    assert (chat.json()["experiment_arm"], chat.json()["model_name"]) == (None, "gpt-4")


# -- pools ----------------------------------------------------------------------------------


def test_a_chat_on_an_existing_pool_is_accepted_and_an_unknown_pool_refused(
    client, routing_rows
) -> None:
    routing_rows(PoolDeployment(pool_name="fast", provider_name="openai", model_name="gpt-4"))
    headers = register_and_login(client)
    created = client.post("/chats", json={"model": "pool:fast"}, headers=headers)
    assert created.status_code == 201, created.text
    chat = created.json()
    assert chat["model_name"] == "pool:fast"

    unknown = client.post("/chats", json={"model": "pool:slow"}, headers=headers)
    assert unknown.status_code == 422
    assert "pool:slow" not in unknown.json()["detail"].split("Available pools:")[1]
    assert "Pool 'slow'" in unknown.json()["detail"]
    assert "pool:fast" in unknown.json()["detail"]
    assert _count(Chat) == 1

    # Its messages are routed through the pool.
    sent = _submit(client, headers, chat["id"])
    assert sent.status_code == 202, sent.text
    assert (sent.json()["provider"], sent.json()["model"]) == ("openai", "gpt-4")
    reply = client.get(f"/messages/{sent.json()['reply_id']}", headers=headers).json()
    assert reply["route"]["requested"] == "pool:fast"
    assert "picked by weight" in reply["route"]["why"]


def test_a_chat_on_a_pool_names_no_provider(client, routing_rows) -> None:
    routing_rows(PoolDeployment(pool_name="fast", provider_name="openai", model_name="gpt-4"))
    headers = register_and_login(client)
    chat = client.post("/chats", json={"model": "pool:fast"}, headers=headers).json()
    read = client.get(f"/chats/{chat['id']}", headers=headers).json()
    assert (read["provider_name"], read["model_name"]) == (None, "pool:fast")


def test_a_chat_cannot_move_to_an_unknown_pool(client, routing_rows) -> None:
    routing_rows(PoolDeployment(pool_name="fast", provider_name="openai", model_name="gpt-4"))
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    moved = client.patch(f"/chats/{chat['id']}", json={"model": "pool:nope"}, headers=headers)
    assert moved.status_code == 422
    assert client.get(f"/chats/{chat['id']}", headers=headers).json()["model_name"] == "echo-1"


# -- per-message fallbacks ------------------------------------------------------------------


def test_a_message_with_an_unknown_fallback_is_refused_and_stores_nothing(client) -> None:
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    refused = _submit(
        client, headers, chat["id"], routing={"fallbacks": [{"provider": "nope", "model": "x"}]}
    )
    assert refused.status_code == 422
    assert "nope/x" in refused.json()["detail"]
    assert _count(Message) == 0


def test_a_message_with_a_usable_fallback_records_its_chain(client) -> None:
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    sent = _submit(
        client,
        headers,
        chat["id"],
        routing={"fallbacks": [{"provider": "openai", "model": "gpt-4"}]},
    )
    assert sent.status_code == 202, sent.text
    reply = client.get(f"/messages/{sent.json()['reply_id']}", headers=headers).json()
    assert reply["route"]["chain"] == [
        {"provider": "echo", "model": "echo-1"},
        {"provider": "openai", "model": "gpt-4"},
    ]


def test_a_models_chain_is_on_the_reply(client, routing_rows) -> None:
    routing_rows(
        FallbackChain(
            provider_name="echo",
            model_name="echo-1",
            targets=[{"provider": "echo", "model": "echo-2"}, {"provider": "nope", "model": "x"}],
        )
    )
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    sent = _submit(client, headers, chat["id"])
    assert sent.status_code == 202, sent.text
    reply = client.get(f"/messages/{sent.json()['reply_id']}", headers=headers).json()
    # The admin's chain, less the target that is not there.
    assert [t["model"] for t in reply["route"]["chain"]] == ["echo-1", "echo-2"]


def test_a_chat_with_an_unknown_fallback_is_refused(client) -> None:
    headers = register_and_login(client)
    created = client.post(
        "/chats",
        json={"routing": {"fallbacks": [{"provider": "nope", "model": "x"}]}},
        headers=headers,
    )
    assert created.status_code == 422
    assert _count(Chat) == 0


def test_routes_lists_the_pools_and_auto_cheapest(client, routing_rows) -> None:
    routing_rows(
        PoolDeployment(pool_name="fast", provider_name="openai", model_name="gpt-4", weight=2),
        PoolDeployment(pool_name="fast", provider_name="anthropic", model_name="stub-model"),
        # A pool whose only deployment names a model nobody offers routes nowhere: unlisted.
        PoolDeployment(pool_name="gone", provider_name="openai", model_name="no-such-model"),
    )
    headers = register_and_login(client)
    routes = client.get("/routes", headers=headers)
    assert routes.status_code == 200
    by_model = {r["model"]: r for r in routes.json()}
    assert set(by_model) == {"pool:fast", "auto:cheapest"}
    assert (by_model["pool:fast"]["kind"], by_model["pool:fast"]["targets"]) == ("pool", 2)
    assert by_model["auto:cheapest"]["kind"] == "cost"
    assert client.get("/routes").status_code == 401
