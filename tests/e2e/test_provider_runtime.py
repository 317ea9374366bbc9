"""Providers changed at run time reach running processes (issue 13, "Done when").

Own processes for this module: an API and a worker started WITHOUT -Q (every queue, as they
come), both with a PROVIDER_KEYS_SECRET so admin keys can be stored; the session's shared
worker (-Q echo,anthropic,openai) runs beside them and must stay on its queues. Two OpenAI
stubs stand for an OpenAI-compatible server before and after an endpoint change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import ProviderUsage, User
from tests.e2e.harness import Process, start_api, start_worker, wait_until
from tests.helpers import empty_tables, register_and_login
from tests.stubs.openai_stub import OpenAIStub
from tests.test_provider_keys import dump_test_database

CANARY_KEY = "sk-canary-" + uuid.uuid4().hex
SLOW_MODEL = "stub-model+tokens=40+delay=100"


@pytest.fixture(scope="module")
def lab_stubs() -> Iterator[tuple[OpenAIStub, str, OpenAIStub, str]]:
    first, second = OpenAIStub(), OpenAIStub()
    with first.serve_in_thread() as first_url, second.serve_in_thread() as second_url:
        yield first, first_url, second, second_url


@pytest.fixture(scope="module")
def runtime_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "PROVIDER_KEYS_SECRET": Fernet.generate_key().decode()}


@pytest.fixture(scope="module")
def runtime_api(runtime_env: dict[str, str], log_dir: Path) -> Iterator[tuple[Process, str]]:
    process, url = start_api(runtime_env, log_dir)
    yield process, url
    process.stop()


@pytest.fixture(scope="module")
def all_queues_worker(runtime_env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    process = start_worker(runtime_env, log_dir, None, concurrency=20, name="all-queues")
    yield process
    process.stop()


class RecordingClient(httpx.Client):
    """Keeps every answer's body, to check that no answer ever carried the key."""

    bodies: list[str]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.bodies = []

    def request(self, *args: object, **kwargs: object) -> httpx.Response:
        response = super().request(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies.append(response.text)
        return response


@pytest.fixture(scope="module")
def admin_http(
    runtime_api: tuple[Process, str], all_queues_worker: Process, worker: Process
) -> Iterator[RecordingClient]:
    with RecordingClient(base_url=runtime_api[1], timeout=30) as client:
        yield client
    empty_tables()  # later tests count the rows they expect in the whole database


@pytest.fixture(scope="module")
def admin_headers(admin_http: RecordingClient, database: str) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    headers = register_and_login(admin_http, email)
    with session_scope() as session:
        session.execute(update(User).where(User.email == email).values(is_admin=True))
    return headers


@pytest.fixture(scope="module")
def lab(
    admin_http: RecordingClient,
    admin_headers: dict[str, str],
    lab_stubs: tuple[OpenAIStub, str, OpenAIStub, str],
) -> Iterator[str]:
    """An OpenAI-compatible provider created through the admin API (at the first stub)."""
    _, first_url, _, _ = lab_stubs
    created = admin_http.post(
        "/admin/providers",
        json={
            "provider_name": "lab",
            "adapter": "openai_compatible",
            "api_endpoint": first_url,
            "api_key": CANARY_KEY,
            "default_model": "stub-model",
            "models": ["stub-model", SLOW_MODEL],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    yield "lab"
    admin_http.patch("/admin/providers/lab", json={"is_enabled": False}, headers=admin_headers)
    admin_http.delete("/admin/providers/lab", headers=admin_headers)


def _chat(http: httpx.Client, headers: dict[str, str], provider: str, model: str) -> str:
    chat = http.post("/chats", json={"provider": provider, "model": model}, headers=headers)
    assert chat.status_code == 201, chat.text
    return str(chat.json()["id"])


def _submit(http: httpx.Client, headers: dict[str, str], chat_id: str) -> dict:
    answer = http.post(f"/chats/{chat_id}/messages", json={"message": "hello lab"}, headers=headers)
    return {"status_code": answer.status_code, **answer.json()}


def _ask(http: httpx.Client, headers: dict[str, str], provider: str, model: str) -> dict:
    return _submit(http, headers, _chat(http, headers, provider, model))


def _finished(http: httpx.Client, headers: dict[str, str], reply_id: str) -> dict:
    result: dict = {}

    def done() -> bool:
        result.update(http.get(f"/messages/{reply_id}", headers=headers).json())
        return result["status"] in ("completed", "failed", "cancelled")

    wait_until(done, 30, interval=0.05)
    return result


def test_a_provider_added_at_run_time_is_served_by_the_running_all_queues_worker(
    admin_http: RecordingClient,
    admin_headers: dict[str, str],
    lab: str,
    lab_stubs: tuple[OpenAIStub, str, OpenAIStub, str],
    all_queues_worker: Process,
) -> None:
    first, _, _, _ = lab_stubs
    listed = {p["name"]: p for p in admin_http.get("/providers", headers=admin_headers).json()}
    assert listed[lab]["is_enabled"] is True
    assert listed[lab]["models"] == ["stub-model", SLOW_MODEL]

    accepted = _ask(admin_http, admin_headers, lab, "stub-model")
    assert accepted["status_code"] == 202, accepted
    reply = _finished(admin_http, admin_headers, accepted["reply_id"])
    assert reply["status"] == "completed", reply
    assert (reply["provider"], reply["model"]) == (lab, "stub-model")
    assert reply["content"].startswith("tok0")
    sent = first.requests_for("/chat/completions")
    assert sent and sent[-1].headers["authorization"] == f"Bearer {CANARY_KEY}"
    log = all_queues_worker.log()
    assert "consuming the new provider queue lab" in log
    # It woke its own loop rather than wait out Celery's 2 s drain (docs/benchmarks.md).
    assert "Task worker.wake[" in log
    with session_scope() as session:
        usage = session.scalar(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply["id"]))
        )
        assert usage is not None and usage.provider_name == lab


def test_a_worker_started_with_queues_stays_on_them(lab: str, worker: Process) -> None:
    from workers.celery_app import celery_app

    queues = celery_app.control.inspect(timeout=5).active_queues() or {}
    by_worker = {name: {q["name"] for q in found} for name, found in queues.items()}
    shared = [names for host, names in by_worker.items() if host.startswith("e2e-")]
    following = [names for host, names in by_worker.items() if host.startswith("all-queues-")]
    assert shared and all(lab not in names for names in shared)
    assert following and all(lab in names for names in following)


def test_an_endpoint_change_reaches_the_worker_without_a_restart(
    admin_http: RecordingClient,
    admin_headers: dict[str, str],
    lab: str,
    lab_stubs: tuple[OpenAIStub, str, OpenAIStub, str],
) -> None:
    first, _, second, second_url = lab_stubs
    changed = admin_http.patch(
        f"/admin/providers/{lab}", json={"api_endpoint": second_url}, headers=admin_headers
    )
    assert changed.status_code == 200, changed.text
    before = len(first.requests_for("/chat/completions"))

    def served_by_the_new_endpoint() -> bool:
        # The worker learns of the change within a check interval; until then it may still
        # use the old endpoint, so ask until a reply comes from the new one.
        accepted = _ask(admin_http, admin_headers, lab, "stub-model")
        assert accepted["status_code"] == 202, accepted
        assert _finished(admin_http, admin_headers, accepted["reply_id"])["status"] == "completed"
        return bool(second.requests_for("/chat/completions"))

    wait_until(served_by_the_new_endpoint, 20, interval=0.2)
    # Once the new endpoint has answered, the old one gets nothing more.
    after = len(first.requests_for("/chat/completions"))
    accepted = _ask(admin_http, admin_headers, lab, "stub-model")
    assert _finished(admin_http, admin_headers, accepted["reply_id"])["status"] == "completed"
    assert len(first.requests_for("/chat/completions")) == after
    assert after - before <= 2  # the worker switched within a couple of replies


def test_disabling_refuses_new_submissions_while_a_running_reply_finishes(
    admin_http: RecordingClient, admin_headers: dict[str, str], lab: str
) -> None:
    chat_id = _chat(admin_http, admin_headers, lab, "stub-model")
    running = _ask(admin_http, admin_headers, lab, SLOW_MODEL)  # 40 tokens, 100 ms apart
    assert running["status_code"] == 202, running
    disabled = admin_http.patch(
        f"/admin/providers/{lab}", json={"is_enabled": False}, headers=admin_headers
    )
    assert disabled.status_code == 200, disabled.text

    refused = _submit(admin_http, admin_headers, chat_id)  # a chat made while it was enabled
    assert refused["status_code"] == 422, refused
    assert "disabled" in refused["detail"]
    new_chat = admin_http.post(
        "/chats", json={"provider": lab, "model": "stub-model"}, headers=admin_headers
    )
    assert new_chat.status_code == 422, new_chat.text
    assert _finished(admin_http, admin_headers, running["reply_id"])["status"] == "completed"

    enabled = admin_http.patch(
        f"/admin/providers/{lab}", json={"is_enabled": True}, headers=admin_headers
    )
    assert enabled.status_code == 200, enabled.text
    assert _submit(admin_http, admin_headers, chat_id)["status_code"] == 202


def test_the_canary_key_is_in_no_answer_log_or_database_dump(
    admin_http: RecordingClient,
    admin_headers: dict[str, str],
    lab: str,
    runtime_api: tuple[Process, str],
    all_queues_worker: Process,
) -> None:
    shown = admin_http.get(f"/admin/providers/{lab}", headers=admin_headers)
    assert shown.status_code == 200 and shown.json()["api_key_set"] is True
    assert shown.json()["api_key_hint"] == "…" + CANARY_KEY[-4:]
    admin_http.get("/admin/providers", headers=admin_headers)
    assert all(CANARY_KEY not in body for body in admin_http.bodies)
    assert CANARY_KEY not in runtime_api[0].log()
    assert CANARY_KEY not in all_queues_worker.log()

    dump = dump_test_database()
    assert "provider_configs" in dump and "lab" in dump
    assert CANARY_KEY not in dump


def _stored_usage(reply_id: str) -> ProviderUsage:
    with session_scope() as session:
        usage = session.scalar(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
        )
        assert usage is not None
        return usage


def test_a_price_change_applies_to_usage_recorded_after_it(
    admin_http: RecordingClient, admin_headers: dict[str, str], lab: str
) -> None:
    def priced_reply() -> ProviderUsage:
        accepted = _ask(admin_http, admin_headers, lab, "stub-model")
        assert _finished(admin_http, admin_headers, accepted["reply_id"])["status"] == "completed"
        return _stored_usage(accepted["reply_id"])

    def set_price(input_price: str, output_price: str) -> None:
        changed = admin_http.patch(
            f"/admin/providers/{lab}/models/stub-model",
            json={
                "input_cost_per_1k_tokens": input_price,
                "output_cost_per_1k_tokens": output_price,
            },
            headers=admin_headers,
        )
        assert changed.status_code == 200, changed.text

    set_price("1", "2")
    wait_until(lambda: priced_reply().cost is not None, 20, interval=0.2)  # the worker saw it
    before = priced_reply()
    assert (
        before.cost
        == (Decimal(1) * before.prompt_tokens + Decimal(2) * before.completion_tokens) / 1000
    )

    set_price("10", "20")
    wait_until(lambda: priced_reply().cost != before.cost, 20, interval=0.2)
    after = priced_reply()
    assert (
        after.cost
        == (Decimal(10) * after.prompt_tokens + Decimal(20) * after.completion_tokens) / 1000
    )
    assert _stored_usage(str(before.message_id)).cost == before.cost  # stored cost kept
