"""/admin/routing (issue 15 item 6): fallback chains, pools and A/B experiments edited at run
time, each write reloading the catalog the planner reads; per-arm results from usage rows and
ratings, on PostgreSQL and on the dev server's SQLite.

The settings (tests/conftest.py): echo offers echo-1 and echo-2, openai gpt-4, gpt-3.5-turbo
and stub-model, anthropic claude-3-sonnet-20240229 and stub-model.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from shared.admin.experiments import experiment_results
from shared.admin.routing import (
    InvalidRoutingChange,
    NewDeployment,
    NewExperiment,
    pool_health,
    routing_admin,
)
from shared.db import make_engine, session_scope
from shared.models import Chat, Experiment, Message, ProviderCatalog, ProviderUsage, User
from shared.providers.directory import current_catalog
from shared.routing.plan import target_health
from shared.routing.targets import Deployment, Target
from shared.settings import get_settings
from tests.api.test_admin_users import make_admin
from tests.helpers import register_and_login
from tests.test_migrations import upgrade

SLASH_MODEL = "meta-llama/Llama-3-8B"
ECHO_1 = {"provider": "echo", "model": "echo-1"}
ECHO_2 = {"provider": "echo", "model": "echo-2"}
GPT_4 = {"provider": "openai", "model": "gpt-4"}


@pytest.fixture
def admin(client: Any) -> dict[str, str]:
    return make_admin(client)[0]


def catalog_version() -> int:
    with session_scope() as session:
        return session.scalar(select(ProviderCatalog.version)) or 0


def routing():  # type: ignore[no-untyped-def]
    """The routing tables this process serves now."""
    return current_catalog(get_settings()).routing


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    return str(body["detail"])


# -- chains -----------------------------------------------------------------------------------


def test_a_chain_is_set_replaced_listed_and_removed_and_the_catalog_follows(client, admin):
    before = catalog_version()
    put = client.put(
        "/admin/routing/chains/echo/echo-1",
        json={"targets": [GPT_4, ECHO_2]},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    chain = put.json()
    assert (chain["provider"], chain["model"]) == ("echo", "echo-1")
    assert [(t["provider"], t["model"]) for t in chain["targets"]] == [
        ("openai", "gpt-4"),
        ("echo", "echo-2"),
    ]
    assert all(t["usable"] for t in chain["targets"])
    assert catalog_version() == before + 1
    assert routing().chains[Target("echo", "echo-1")] == (
        Target("openai", "gpt-4"),
        Target("echo", "echo-2"),
    )

    replaced = client.put(
        "/admin/routing/chains/echo/echo-1", json={"targets": [ECHO_2]}, headers=admin
    )
    assert replaced.status_code == 200, replaced.text
    assert routing().chains[Target("echo", "echo-1")] == (Target("echo", "echo-2"),)
    listed = client.get("/admin/routing/chains", headers=admin).json()
    assert listed["count"] == 1
    assert [t["model"] for t in listed["data"][0]["targets"]] == ["echo-2"]

    removed = client.delete("/admin/routing/chains/echo/echo-1", headers=admin)
    assert removed.status_code == 204, removed.text
    assert Target("echo", "echo-1") not in routing().chains
    assert client.get("/admin/routing/chains", headers=admin).json() == {"data": [], "count": 0}
    assert catalog_version() == before + 3
    again = client.delete("/admin/routing/chains/echo/echo-1", headers=admin)
    assert "No fallback chain for echo/echo-1" in error_of(again, 404)


def test_a_model_name_with_slashes_and_colons_is_the_rest_of_the_path(client, admin):
    for name in (SLASH_MODEL, "llama3.1:8b"):
        added = client.post(
            "/admin/providers/openai/models", json={"model_name": name}, headers=admin
        )
        assert added.status_code == 201, added.text
    put = client.put(
        f"/admin/routing/chains/openai/{SLASH_MODEL}",
        json={"targets": [{"provider": "openai", "model": "llama3.1:8b"}]},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    assert put.json()["model"] == SLASH_MODEL
    assert routing().chains[Target("openai", SLASH_MODEL)] == (Target("openai", "llama3.1:8b"),)
    # A client escaping the whole name (%2F) reaches the same chain.
    escaped = client.delete("/admin/routing/chains/openai/meta-llama%2FLlama-3-8B", headers=admin)
    assert escaped.status_code == 204, escaped.text
    assert Target("openai", SLASH_MODEL) not in routing().chains


@pytest.mark.parametrize(
    ("path", "targets", "expected"),
    [
        ("echo/echo-1", [{"provider": "nope", "model": "x"}], "targets[0]: unknown provider"),
        ("echo/echo-1", [{"provider": "echo", "model": "gpt-4"}], "no enabled model 'gpt-4'"),
        ("nope/echo-1", [ECHO_2], "primary: unknown provider 'nope'"),
        ("echo/missing", [ECHO_2], "primary: 'echo' has no enabled model 'missing'"),
        ("echo/echo-1", [ECHO_2, ECHO_1], "targets[1]: echo/echo-1 is the primary itself"),
        ("echo/echo-1", [ECHO_2, GPT_4, ECHO_2], "echo/echo-2 is listed twice"),
    ],
)
def test_a_chain_naming_what_cannot_be_a_fallback_is_refused(
    client, admin, path, targets, expected
):
    answer = client.put(f"/admin/routing/chains/{path}", json={"targets": targets}, headers=admin)
    assert expected in error_of(answer, 422)
    assert client.get("/admin/routing/chains", headers=admin).json()["count"] == 0


@pytest.mark.parametrize(
    "path", ["echo/a%00b", "e%00cho/echo-1", "Echo/echo-1", "echo/a%20b", f"echo/{'m' * 101}"]
)
def test_a_primary_that_no_provider_could_have_is_refused_before_any_lookup(client, admin, path):
    for method, body in (("PUT", {"targets": [ECHO_2]}), ("DELETE", None)):
        answer = client.request(method, f"/admin/routing/chains/{path}", json=body, headers=admin)
        assert answer.status_code == 422, (method, answer.text)
        assert answer.json()["error"] == "ValidationError"


@pytest.mark.parametrize(
    "body",
    [
        {"targets": []},
        {"targets": [{"provider": "openai", "model": f"m{i}"} for i in range(11)]},
        {"targets": [ECHO_2], "extra": 1},
        {"targets": [{"provider": "echo"}]},
        {"targets": [{"provider": "Bad Name", "model": "echo-2"}]},
        {},
    ],
)
def test_a_malformed_chain_body_is_refused(client, admin, body):
    answer = client.put("/admin/routing/chains/echo/echo-1", json=body, headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "ValidationError"


def test_a_chain_target_disabled_later_is_kept_but_shown_unusable(client, admin):
    put = client.put("/admin/routing/chains/echo/echo-1", json={"targets": [GPT_4]}, headers=admin)
    assert put.status_code == 200, put.text
    disabled = client.patch(
        "/admin/providers/openai/models/gpt-4", json={"is_enabled": False}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text
    listed = client.get("/admin/routing/chains", headers=admin).json()
    assert listed["data"][0]["targets"] == [
        {"provider": "openai", "model": "gpt-4", "usable": False}
    ]
    # And it can no longer be named in a new chain.
    refused = client.put(
        "/admin/routing/chains/echo/echo-2", json={"targets": [GPT_4]}, headers=admin
    )
    assert "no enabled model 'gpt-4'" in error_of(refused, 422)


# -- pools ------------------------------------------------------------------------------------


def test_a_pool_is_replaced_whole_and_lists_live_health(client, admin):
    before = catalog_version()
    put = client.put(
        "/admin/routing/pools/fast-1",
        json={
            "deployments": [
                {"provider": "echo", "model": "echo-1", "weight": 3},
                {"provider": "echo", "model": "echo-2", "weight": 1},
                {**GPT_4, "weight": 5, "is_enabled": False},
            ]
        },
        headers=admin,
    )
    assert put.status_code == 200, put.text
    pool = put.json()
    assert (pool["name"], pool["model"]) == ("fast-1", "pool:fast-1")
    assert [
        (d["model"], d["weight"], d["is_enabled"], d["usable"]) for d in pool["deployments"]
    ] == [
        ("echo-1", 3, True, True),
        ("echo-2", 1, True, True),
        ("gpt-4", 5, False, False),
    ]
    assert all(
        d["cooling_down"] is False and d["weight_factor"] == 1.0 for d in pool["deployments"]
    )
    assert catalog_version() == before + 1
    # The catalog holds the enabled deployments only.
    assert routing().pools["fast-1"] == (
        Deployment(Target("echo", "echo-1"), 3),
        Deployment(Target("echo", "echo-2"), 1),
    )

    target_health(get_settings()).cool_down(Target("echo", "echo-2"), 60)
    listed = client.get("/admin/routing/pools", headers=admin).json()
    assert listed["count"] == 1
    health = {
        d["model"]: (d["cooling_down"], d["weight_factor"])
        for d in listed["data"][0]["deployments"]
    }
    assert health == {"echo-1": (False, 1.0), "echo-2": (True, 0.0), "gpt-4": (False, 1.0)}

    # PUT replaces: the rows not sent are gone, one sent again takes its new weight.
    replaced = client.put(
        "/admin/routing/pools/fast-1",
        json={"deployments": [{"provider": "echo", "model": "echo-2", "weight": 7}]},
        headers=admin,
    )
    assert replaced.status_code == 200, replaced.text
    assert [(d["model"], d["weight"]) for d in replaced.json()["deployments"]] == [("echo-2", 7)]
    assert routing().pools["fast-1"] == (Deployment(Target("echo", "echo-2"), 7),)

    removed = client.delete("/admin/routing/pools/fast-1", headers=admin)
    assert removed.status_code == 204, removed.text
    assert "fast-1" not in routing().pools
    assert client.get("/admin/routing/pools", headers=admin).json() == {"data": [], "count": 0}
    assert "No pool 'fast-1'" in error_of(
        client.delete("/admin/routing/pools/fast-1", headers=admin), 404
    )


def test_a_pool_is_usable_as_a_model_once_set(client, admin):
    user = register_and_login(client)
    refused = client.post("/chats", json={"provider": "echo", "model": "pool:duo"}, headers=user)
    assert refused.status_code == 422, refused.text
    put = client.put(
        "/admin/routing/pools/duo",
        json={"deployments": [{"provider": "echo", "model": "echo-2"}]},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    chat = client.post("/chats", json={"model": "pool:duo"}, headers=user)
    assert chat.status_code == 201, chat.text
    sent = client.post(f"/chats/{chat.json()['id']}/messages", json={"message": "hi"}, headers=user)
    assert sent.status_code == 202, sent.text
    assert (sent.json()["provider"], sent.json()["model"]) == ("echo", "echo-2")


@pytest.mark.parametrize(
    ("name", "deployments", "expected"),
    [
        ("Big%20Pool", [ECHO_1], "String should match pattern"),
        ("-x", [ECHO_1], "String should match pattern"),
        ("p", [], "at least 1 item"),
        ("p", [{**ECHO_1, "weight": 0}], "greater than or equal to 1"),
        ("p", [{**ECHO_1, "weight": 1001}], "less than or equal to 1000"),
        ("p", [{**ECHO_1, "weight": True}], "valid integer"),
        ("p", [{**ECHO_1, "weight": 1.5}], "valid integer"),
        ("p", [{**ECHO_1, "is_enabled": 1}], "valid boolean"),
        ("p", [ECHO_1, {**ECHO_1, "weight": 2}], "echo/echo-1 is listed twice"),
        ("p", [{"provider": "echo", "model": "gpt-4"}], "deployments[0]: 'echo' has no"),
        ("p", [ECHO_1, {"provider": "ghost", "model": "x"}], "deployments[1]: unknown provider"),
    ],
)
def test_a_pool_that_cannot_be_served_is_refused(client, admin, name, deployments, expected):
    answer = client.put(
        f"/admin/routing/pools/{name}", json={"deployments": deployments}, headers=admin
    )
    assert expected in error_of(answer, 422)
    assert client.get("/admin/routing/pools", headers=admin).json()["count"] == 0


# -- experiments ------------------------------------------------------------------------------


def create_experiment(client: Any, headers: dict[str, str], **fields: Any) -> Any:
    body = {"name": "echo-2 trial", "control": ECHO_1, "variant": ECHO_2} | fields
    return client.post("/admin/routing/experiments", json=body, headers=headers)


def test_an_experiment_is_created_changed_and_removed_and_new_chats_follow_it(client, admin):
    before = catalog_version()
    created = create_experiment(client, admin, variant_share=1)
    assert created.status_code == 201, created.text
    experiment = created.json()
    assert experiment["name"] == "echo-2 trial" and experiment["is_active"] is True
    assert experiment["variant_share"] == 1.0
    assert experiment["control"] == {**ECHO_1, "usable": True}
    assert experiment["variant"] == {**ECHO_2, "usable": True}
    assert catalog_version() == before + 1
    [record] = routing().experiments
    assert (record.id, record.control, record.variant) == (
        experiment["id"],
        Target("echo", "echo-1"),
        Target("echo", "echo-2"),
    )

    # A share of 1: every new chat bound for the control joins the variant.
    user = register_and_login(client)
    chat = client.post("/chats", json={"provider": "echo", "model": "echo-1"}, headers=user)
    assert chat.status_code == 201, chat.text
    assert (chat.json()["model_name"], chat.json()["experiment_arm"]) == ("echo-2", "variant")

    path = f"/admin/routing/experiments/{experiment['id']}"
    changed = client.patch(
        path, json={"variant_share": 0, "name": "renamed", "is_active": False}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["variant_share"], changed.json()["name"]) == (0.0, "renamed")
    assert changed.json()["is_active"] is False
    assert routing().experiments == ()
    chat = client.post("/chats", json={"provider": "echo", "model": "echo-1"}, headers=user)
    assert (chat.json()["model_name"], chat.json()["experiment_arm"]) == ("echo-1", None)

    listed = client.get("/admin/routing/experiments", headers=admin).json()
    assert listed["count"] == 1 and listed["data"][0]["name"] == "renamed"
    assert client.patch(path, json={}, headers=admin).status_code == 200

    removed = client.delete(path, headers=admin)
    assert removed.status_code == 204, removed.text
    assert client.get("/admin/routing/experiments", headers=admin).json()["count"] == 0
    assert "No experiment" in error_of(client.delete(path, headers=admin), 404)
    assert "No experiment" in error_of(client.patch(path, json={}, headers=admin), 404)
    with session_scope() as session:  # the chat it had assigned forgets it
        assert (
            session.scalar(select(Chat.experiment_id).where(Chat.experiment_arm.is_not(None)))
            is None
        )


def test_one_active_experiment_per_control_and_unique_names(client, admin):
    first = create_experiment(client, admin)
    assert first.status_code == 201, first.text
    same_name = create_experiment(client, admin, control=GPT_4)
    assert "named 'echo-2 trial' already exists" in error_of(same_name, 409)
    second = create_experiment(client, admin, name="gpt-4 trial", variant=GPT_4)
    detail = error_of(second, 409)
    assert "'echo-2 trial'" in detail and "already active on echo/echo-1" in detail

    # Inactive, it may wait; activating it while the first runs is refused.
    waiting = create_experiment(client, admin, name="gpt-4 trial", variant=GPT_4, is_active=False)
    assert waiting.status_code == 201, waiting.text
    path = f"/admin/routing/experiments/{waiting.json()['id']}"
    assert "already active" in error_of(
        client.patch(path, json={"is_active": True}, headers=admin), 409
    )
    assert "already exists" in error_of(
        client.patch(path, json={"name": "echo-2 trial"}, headers=admin), 409
    )
    stop = client.patch(
        f"/admin/routing/experiments/{first.json()['id']}", json={"is_active": False}, headers=admin
    )
    assert stop.status_code == 200, stop.text
    started = client.patch(path, json={"is_active": True}, headers=admin)
    assert started.status_code == 200, started.text
    assert [e.name for e in routing().experiments] == ["gpt-4 trial"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"variant": ECHO_1}, "control and variant must be different"),
        ({"variant": {"provider": "echo", "model": "nope"}}, "variant: 'echo' has no"),
        ({"control": {"provider": "ghost", "model": "m"}}, "control: unknown provider"),
        ({"variant_share": 1.5}, "less than or equal to 1"),
        ({"variant_share": -0.1}, "greater than or equal to 0"),
        ({"variant_share": True}, "valid number"),
        ({"name": ""}, "at least 1 character"),
        ({"name": "   "}, "name must not be blank"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"is_active": "yes"}, "valid boolean"),
        ({"arm": "b"}, "Extra inputs"),
    ],
)
def test_an_experiment_that_cannot_split_is_refused(client, admin, fields, expected):
    assert expected in error_of(create_experiment(client, admin, **fields), 422)
    assert client.get("/admin/routing/experiments", headers=admin).json()["count"] == 0


def test_a_patch_refuses_nulls_and_bad_values(client, admin):
    created = create_experiment(client, admin)
    path = f"/admin/routing/experiments/{created.json()['id']}"
    for body, expected in (
        ({"is_active": None}, "is_active cannot be null"),
        ({"variant_share": 2}, "less than or equal to 1"),
        ({"control": GPT_4}, "Extra inputs"),
    ):
        assert expected in error_of(client.patch(path, json=body, headers=admin), 422)
    for bad in ("0", "abc", str(2**31)):
        assert (
            client.patch(f"/admin/routing/experiments/{bad}", json={}, headers=admin).status_code
            == 422
        )
    assert "No experiment 999" in error_of(
        client.get("/admin/routing/experiments/999/results", headers=admin), 404
    )


def test_routing_routes_refuse_a_user_who_is_not_an_admin(client, admin):
    created = create_experiment(client, admin)
    user = register_and_login(client)
    experiment = f"/admin/routing/experiments/{created.json()['id']}"
    for method, path, body in (
        ("GET", "/admin/routing/chains", None),
        ("PUT", "/admin/routing/chains/echo/echo-1", {"targets": [ECHO_2]}),
        ("DELETE", "/admin/routing/chains/echo/echo-1", None),
        ("GET", "/admin/routing/pools", None),
        ("PUT", "/admin/routing/pools/p", {"deployments": [ECHO_1]}),
        ("DELETE", "/admin/routing/pools/p", None),
        ("GET", "/admin/routing/experiments", None),
        ("POST", "/admin/routing/experiments", {"name": "n", "control": ECHO_1, "variant": GPT_4}),
        ("PATCH", experiment, {"is_active": False}),
        ("DELETE", experiment, None),
        ("GET", f"{experiment}/results", None),
    ):
        refused = client.request(method, path, json=body, headers=user)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"] == "Forbidden"
        assert client.request(method, path, json=body).status_code == 401
    assert client.get("/admin/routing/experiments", headers=admin).json()["data"][0]["is_active"]
    assert routing().chains == {} and routing().pools == {}


def test_the_service_checks_what_the_schemas_check_for_other_callers(client, admin):
    """The service is the boundary (a CLI or a script may call it without the API's schemas)."""
    settings = get_settings()
    echo_1, echo_2 = Target("echo", "echo-1"), Target("echo", "echo-2")
    with session_scope() as session:
        user = session.scalars(select(User).where(User.is_admin)).one()
        refusals = [
            (lambda: routing_admin.set_chain(session, user, settings, echo_1, []), "1 to 10"),
            (
                lambda: routing_admin.set_chain(session, user, settings, echo_1, [echo_2] * 11),
                "1 to 10",
            ),
            (
                lambda: routing_admin.set_pool(
                    session, user, settings, "Bad", [NewDeployment(echo_1)]
                ),
                "must match",
            ),
            (lambda: routing_admin.set_pool(session, user, settings, "p", []), "1 to 50"),
            (
                lambda: routing_admin.set_pool(
                    session, user, settings, "p", [NewDeployment(echo_1, weight=True)]
                ),
                "weight must be an integer",
            ),
            (
                lambda: routing_admin.set_pool(
                    session, user, settings, "p", [NewDeployment(echo_1, weight=0)]
                ),
                "weight must be from 1 to 1000",
            ),
            (
                lambda: routing_admin.create_experiment(
                    session, user, settings, NewExperiment("n", echo_1, echo_2, variant_share=2)
                ),
                "variant_share must be a number from 0 to 1",
            ),
            (
                lambda: routing_admin.update_experiment(session, user, settings, 1, {"arm": "x"}),
                "Unknown fields: arm",
            ),
            (
                lambda: routing_admin.update_experiment(session, user, settings, 1, {"name": " "}),
                "name must not be blank",
            ),
        ]
        for call, expected in refusals:
            with pytest.raises(InvalidRoutingChange, match=expected):
                call()


def test_pool_health_is_unknown_when_redis_cannot_say(client, admin):
    put = client.put("/admin/routing/pools/p", json={"deployments": [ECHO_1]}, headers=admin)
    assert put.status_code == 200, put.text
    with session_scope() as session:
        user = session.scalars(select(User).where(User.is_admin)).one()
        views = routing_admin.list_pools(session, user, get_settings())
    # Port 1: nothing listens, the connection is refused at once.
    away = get_settings().model_copy(update={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert pool_health(away, views) is None


# -- results ----------------------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def seed_results(session: Session, experiment_id: int, user_id: uuid.UUID) -> None:
    """Two control chats and one variant chat of the experiment, and a chat outside it.

    control: 3 requests (one failed, one cached), ratings up, up, down; one more reply rated
    down before T0 (outside a range from T0). variant: 2 requests (one unpriced, one of them
    before T0), one rating down. Outside: a request and a rating that must not count.
    """

    def chat(arm: str | None, created: dt.datetime) -> Chat:
        row = Chat(
            id=uuid.uuid4(),
            user_id=user_id,
            provider_name="echo",
            model_name="echo-2" if arm == "variant" else "echo-1",
            experiment_id=experiment_id if arm else None,
            experiment_arm=arm,
            created_at=created,
        )
        session.add(row)
        return row

    def reply(chat_row: Chat, rating: int | None, created: dt.datetime) -> None:
        session.add(
            Message(
                chat_id=chat_row.id,
                role="assistant",
                content="ok",
                status="completed",
                rating=rating,
                created_at=created,
            )
        )

    def use(
        chat_row: Chat,
        prompt: int,
        completion: int,
        cost: str | None,
        response_ms: int,
        ttft_ms: int | None,
        *,
        created: dt.datetime,
        status: str = "completed",
        cached: bool = False,
    ) -> None:
        session.add(
            ProviderUsage(
                user_id=user_id,
                provider_name=chat_row.provider_name,
                model_name=chat_row.model_name,
                chat_id=chat_row.id,
                prompt_tokens=prompt,
                completion_tokens=completion,
                tokens_used=prompt + completion,
                cost=Decimal(cost) if cost is not None else None,
                response_time_ms=response_ms,
                time_to_first_token_ms=ttft_ms,
                status=status,
                error="unavailable: 503" if status == "failed" else None,
                cached=cached,
                created_at=created,
            )
        )

    hour = dt.timedelta(hours=1)
    control_a, control_b = chat("control", T0 + hour), chat("control", T0 + 2 * hour)
    variant = chat("variant", T0 - hour)
    outside = chat(None, T0 + hour)
    session.flush()
    use(control_a, 10, 20, "0.001000", 100, 10, created=T0 + hour)
    use(control_a, 5, 0, "0.000500", 300, 30, created=T0 + hour, status="failed")
    use(control_b, 0, 0, "0", 50, 5, created=T0 + 2 * hour, cached=True)
    use(variant, 7, 3, None, 200, None, created=T0 + hour)
    use(variant, 4, 4, "0.000200", 400, 40, created=T0 - hour)
    use(outside, 1000, 1000, "9", 9, 9, created=T0 + hour)
    reply(control_a, 1, T0 + hour)
    reply(control_a, -1, T0 + hour)
    reply(control_b, 1, T0 + 2 * hour)
    reply(control_b, None, T0 + 2 * hour)
    reply(control_b, -1, T0 - hour)
    reply(variant, -1, T0 + hour)
    reply(outside, 1, T0 + hour)


ALL_TIME = {
    "control": {
        "chats": 2,
        "requests": 3,
        "prompt_tokens": 15,
        "completion_tokens": 20,
        "total_tokens": 35,
        "cost": "0.001500",
        "failed": 1,
        "error_rate": pytest.approx(1 / 3),
        "cached_requests": 1,
        # [50, 100, 300]: p95 at rank 1.9, 100 + 0.9 * 200.
        "response_time_ms_p50": 100.0,
        "response_time_ms_p95": 280.0,
        "time_to_first_token_ms_p50": 10.0,
        "time_to_first_token_ms_p95": 28.0,
        "ratings_up": 2,
        "ratings_down": 2,
    },
    "variant": {
        "chats": 1,
        "requests": 2,
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "cost": "0.000200",
        "failed": 0,
        "error_rate": 0.0,
        "cached_requests": 0,
        "response_time_ms_p50": 300.0,
        "response_time_ms_p95": 390.0,
        "time_to_first_token_ms_p50": 40.0,
        "time_to_first_token_ms_p95": 40.0,
        "ratings_up": 0,
        "ratings_down": 1,
    },
}
# From T0: the variant's chat (created before) and its earlier request and the control's
# earlier rating drop out.
FROM_T0 = {
    "control": ALL_TIME["control"] | {"ratings_down": 1},
    "variant": ALL_TIME["variant"]
    | {
        "chats": 0,
        "requests": 1,
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "cost": None,
        "response_time_ms_p50": 200.0,
        "response_time_ms_p95": 200.0,
        "time_to_first_token_ms_p50": None,
        "time_to_first_token_ms_p95": None,
    },
}


def arms_of(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {arm.pop("arm"): arm for arm in answer["arms"]}


def test_results_show_both_arms_side_by_side(client, admin):
    created = create_experiment(client, admin)
    experiment_id = created.json()["id"]
    with session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.is_admin))
        seed_results(session, experiment_id, user_id)
    path = f"/admin/routing/experiments/{experiment_id}/results"

    answer = client.get(path, headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["experiment"]["name"] == "echo-2 trial"
    assert (body["from"], body["to"]) == (None, None)
    assert [a["arm"] for a in body["arms"]] == ["control", "variant"]
    arms = arms_of(body)
    assert (arms["control"].pop("provider"), arms["control"].pop("model")) == ("echo", "echo-1")
    assert (arms["variant"].pop("provider"), arms["variant"].pop("model")) == ("echo", "echo-2")
    assert arms == ALL_TIME

    ranged = client.get(
        path, params={"from": T0.isoformat(), "to": "2026-03-02T00:00:00"}, headers=admin
    )
    assert ranged.status_code == 200, ranged.text
    assert ranged.json()["from"].startswith("2026-03-01T12:00:00")
    assert ranged.json()["to"].startswith("2026-03-02T00:00:00")
    arms = arms_of(ranged.json())
    for arm in arms.values():
        del arm["provider"], arm["model"]
    assert arms == FROM_T0

    backwards = client.get(
        path, params={"from": T0.isoformat(), "to": T0.isoformat()}, headers=admin
    )
    assert "'from' must be before 'to'" in error_of(backwards, 422)
    for name, value in (("from", "0001-01-01T00:00:00+05:00"), ("to", "9999-12-31T23:59:59-05:00")):
        outside = client.get(path, params={name: value}, headers=admin)
        assert f"'{name}' is out of range in UTC" in error_of(outside, 422)


def test_results_of_an_experiment_without_chats_are_zeros(client, admin):
    created = create_experiment(client, admin)
    answer = client.get(f"/admin/routing/experiments/{created.json()['id']}/results", headers=admin)
    assert answer.status_code == 200, answer.text
    for arm in answer.json()["arms"]:
        assert arm["chats"] == arm["requests"] == arm["ratings_up"] == 0
        assert arm["cost"] is None and arm["response_time_ms_p95"] is None
        assert arm["error_rate"] == 0.0


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_sqlite_results_match_postgresql(sqlite_engine: Engine) -> None:
    """The dev server has no percentile_cont: the same figures, computed in Python."""
    admin = User(id=uuid.uuid4(), email="a@example.com", password_hash="x", is_admin=True)
    with Session(sqlite_engine, expire_on_commit=False) as session, session.begin():
        session.add(admin)
        experiment = Experiment(
            name="trial",
            control_provider="echo",
            control_model="echo-1",
            variant_provider="echo",
            variant_model="echo-2",
        )
        session.add(experiment)
        session.flush()
        seed_results(session, experiment.id, admin.id)
        experiment_id = experiment.id
    with Session(sqlite_engine) as session:
        admin = session.get(User, admin.id)
        results = experiment_results(session, admin, get_settings(), experiment_id)
        ranged = experiment_results(
            session, admin, get_settings(), experiment_id, T0, T0 + dt.timedelta(days=1)
        )
    for answer, expected in ((results, ALL_TIME), (ranged, FROM_T0)):
        for arm in answer.arms:
            figures = {key: getattr(arm, key) for key in expected[arm.arm]}
            if figures["cost"] is not None:
                figures["cost"] = f"{figures['cost']:.6f}"
            assert figures == expected[arm.arm], arm.arm
