"""Stopping a generation whatever the provider does: cancel and the soft time limit take effect
while the provider is silent, and a hard time limit keeps what was streamed and its usage."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ProviderUsage
from tests.e2e.harness import Process, read_sse, start_worker, wait_until
from tests.helpers import register_and_login

FINAL = ("completed", "failed", "cancelled")
FIRST_THREE = "tok0 tok1 tok2"  # what the stub sends before `fault-stall` stalls


def _start(http: httpx.Client, provider: str, model: str) -> tuple[dict[str, str], dict]:
    headers = register_and_login(http)
    chat = http.post("/chats", json={"provider": provider, "model": model}, headers=headers)
    assert chat.status_code == 201, chat.text
    accepted = http.post(
        f"/chats/{chat.json()['id']}/messages", json={"message": "hi"}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    return headers, accepted.json()


def _final(http: httpx.Client, headers: dict[str, str], reply_id: str, worker: Process) -> dict:
    seen: dict = {}

    def finished() -> bool:
        seen.update(http.get(f"/messages/{reply_id}", headers=headers).json())
        return seen["status"] in FINAL

    wait_until(finished, 30, worker, interval=0.1)
    return seen


def _usage(reply_id: str) -> ProviderUsage:
    with session_scope() as session:
        row = session.scalar(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
        )
    assert row is not None
    return row


def test_cancel_is_honoured_while_the_provider_has_sent_nothing(http, worker):
    headers, accepted = _start(http, "openai", "fault-hang")
    reply_id = accepted["reply_id"]
    wait_until(
        lambda: http.get(f"/messages/{reply_id}", headers=headers).json()["status"] == "running",
        15,
        worker,
    )
    assert http.post(f"/messages/{reply_id}/cancel", headers=headers).status_code == 200
    # PROVIDER_TIMEOUT_SECONDS is 5 here: a cancel read only at the next token would end as
    # a provider timeout ("failed"), not as "cancelled".
    assert _final(http, headers, reply_id, worker)["status"] == "cancelled"
    assert read_sse(http, accepted["stream_url"], headers).last.data["status"] == "cancelled"
    assert _usage(reply_id).status == "cancelled"


def test_cancel_during_a_stall_keeps_the_text_and_its_usage(http, worker):
    headers, accepted = _start(http, "anthropic", "fault-stall")
    stream_url = accepted["stream_url"]
    early = read_sse(http, stream_url, headers, stop_after=1)
    assert early.events[0].event == "token"
    wait_until(
        lambda: http.get(accepted["poll_url"], headers=headers).json()["content"] == FIRST_THREE,
        15,
        worker,
    )
    http.post(f"/messages/{accepted['reply_id']}/cancel", headers=headers)
    reply = _final(http, headers, accepted["reply_id"], worker)
    assert (reply["status"], reply["content"]) == ("cancelled", FIRST_THREE)
    usage = _usage(accepted["reply_id"])
    # Anthropic reported the prompt at message_start: kept; the completion is estimated.
    assert (usage.prompt_tokens_estimated, usage.completion_tokens_estimated) == (False, True)
    assert usage.completion_tokens and usage.completion_tokens > 0


@pytest.fixture
def ollama_worker(service_env, log_dir, request):
    """A worker for the ollama queue with the time limits a test asks for."""
    env = {**service_env, **request.param}
    process = start_worker(env, log_dir, ["ollama"])
    yield process
    process.stop()


@pytest.mark.parametrize(
    "ollama_worker",
    [{"PROVIDER_TIMEOUT_SECONDS": "60", "TASK_SOFT_TIME_LIMIT": "3", "TASK_TIME_LIMIT": "9"}],
    indirect=True,
)
def test_soft_time_limit_ends_a_stalled_reply_keeping_its_text(http, ollama_worker):
    headers, accepted = _start(http, "ollama", "fault-stall")
    reply = _final(http, headers, accepted["reply_id"], ollama_worker)
    assert (reply["status"], reply["content"]) == ("failed", FIRST_THREE)
    assert "TASK_SOFT_TIME_LIMIT" in reply["error"]
    stream = read_sse(http, accepted["stream_url"], headers)
    assert stream.last.event == "error" and stream.text == FIRST_THREE
    assert _usage(accepted["reply_id"]).completion_tokens


@pytest.mark.parametrize(
    "ollama_worker",
    [
        {
            "PROVIDER_TIMEOUT_SECONDS": "60",
            "TASK_SOFT_TIME_LIMIT": "2",
            "TASK_TIME_LIMIT": "4",
            # The watchdog looks too rarely to enforce the soft limit: the hard one strikes.
            "CANCEL_CHECK_INTERVAL_SECONDS": "60",
        }
    ],
    indirect=True,
)
def test_hard_time_limit_keeps_the_streamed_text_and_usage(http, ollama_worker):
    headers, accepted = _start(http, "ollama", "fault-stall")
    reply = _final(http, headers, accepted["reply_id"], ollama_worker)
    assert (reply["status"], reply["content"]) == ("failed", FIRST_THREE), reply["error"]
    usage = _usage(accepted["reply_id"])
    assert usage.status == "failed" and usage.completion_tokens
