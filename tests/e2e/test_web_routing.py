"""Routing on the chat page in a real Chromium, against the real API, worker and stubs.

A chat whose model fails after three tokens, with a fallback in its routing options (set
through the API: the page does not edit routing): the reply shows where it restarted, ends on
exactly the stored text (the failed attempt's tokens dropped), lists both attempts, and keeps
a thumbs up across a reload. A response-cache hit shows its badge.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.e2e.browser import WebUser, log_in_page
from tests.e2e.harness import wait_until
from tests.e2e.test_fallback import set_pool
from tests.e2e.test_web_chat import body_text, send, stored, wait_until_ready
from tests.stubs import reply_text

FAULTING = {"provider": "openai", "model": "fault-cut"}  # 3 tokens, then the connection drops
# Slow, so the page is still streaming the fallback while the test looks.
FALLBACK = {"provider": "anthropic", "model": "stub-model+tokens=30+delay=150"}
FALLBACK_TEXT = reply_text(30)
CACHED_MODEL = {"provider": "openai", "model": "stub-model+tokens=8"}
ROUTES = "routes"  # the pickers' pseudo provider for GET /routes (js/chat/providers.js)
# Long enough for the cut stream, its retries and the 30 slow tokens of the fallback.
REPLY_TIMEOUT_MS = 30_000


def bearer(user: WebUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


def routed_chat(
    http: httpx.Client, user: WebUser, title: str, target: dict[str, str], routing: dict
) -> str:
    """A chat on `target`, its routing options then set by PATCH (as a client would)."""
    created = http.post(
        "/chats",
        json={"title": title, "provider": target["provider"], "model": target["model"]},
        headers=bearer(user),
    )
    assert created.status_code == 201, created.text
    chat_id = str(created.json()["id"])
    patched = http.patch(f"/chats/{chat_id}", json={"routing": routing}, headers=bearer(user))
    assert patched.status_code == 200, patched.text
    options = patched.json()["routing"] or {}
    assert {key: value for key, value in options.items() if value is not None} == routing
    return chat_id


def open_chat(page: Page, chat_id: str) -> None:
    """The page, reloaded on the chat's address: it opens the chat with its history loaded."""
    page.goto(f"/#chat={chat_id}")
    page.reload()
    wait_until_ready(page)
    expect(page.locator(f".chat-item.active[data-chat-id='{chat_id}']")).to_be_visible()


def finished(reply: Locator) -> None:
    expect(reply).to_have_attribute("data-status", "completed", timeout=REPLY_TIMEOUT_MS)
    # The row read after the end event (attempts, times) has been shown.
    reply.locator(".meta-duration").wait_for()


def assert_attempts(reply: Locator, row: dict) -> None:
    """The disclosure lists the stored attempts: the failed one first, with its error."""
    details = reply.locator("details.reply-attempts")
    expect(details.locator("summary")).to_have_text("2 attempts")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    items = details.locator(".attempt-list > li.attempt")
    expect(items).to_have_count(2)
    failed, answered = row["attempts"]
    assert (failed["status"], answered["status"]) == ("failed", "completed")
    expect(items.nth(0)).to_have_attribute("data-status", "failed")
    expect(items.nth(0).locator(".attempt-target")).to_have_text("openai/fault-cut")
    expect(items.nth(0).locator(".attempt-status")).to_have_text("failed")
    expect(items.nth(0).locator(".attempt-error")).to_have_text(failed["error"])
    expect(items.nth(1)).to_have_attribute("data-status", "completed")
    expect(items.nth(1).locator(".attempt-target")).to_have_text(
        f"{FALLBACK['provider']}/{FALLBACK['model']}"
    )
    expect(items.nth(1).locator(".attempt-tokens")).to_have_text(
        f"{answered['prompt_tokens']} in · 30 out"
    )
    expect(items.nth(1).locator(".attempt-ttft")).to_contain_text("first token")
    expect(items.nth(1).locator(".attempt-error")).to_have_count(0)
    for item in (items.nth(0), items.nth(1)):
        expect(item.locator(".attempt-cost")).to_be_visible()


def restart_note(row: dict) -> str:
    failed = row["attempts"][0]
    return f"Restarted on {FALLBACK['provider']}/{FALLBACK['model']}: {failed['error']}"


def test_a_fallback_mid_reply_shows_the_restart_and_attempts_and_keeps_a_rating(
    page: Page, api_url: str, http: httpx.Client, web_user: WebUser
) -> None:
    chat_id = routed_chat(http, web_user, "Fallback", FAULTING, {"fallbacks": [FALLBACK]})
    log_in_page(page, api_url, web_user.email, web_user.password)
    open_chat(page, chat_id)
    expect(page.locator("#model-select")).to_have_value(FAULTING["model"])

    reply = send(page, "Tell me a story")
    note = reply.locator(".restart-note")
    # The note comes with the restart event, while the fallback still streams (30 tokens,
    # 150 ms apart): not from the stored row, which the page reads once the reply is final.
    expect(note).to_have_count(1)
    assert reply.get_attribute("data-status") == "running"
    expect(note).to_contain_text(f"Restarted on {FALLBACK['provider']}/{FALLBACK['model']}: ")
    finished(reply)
    expect(note).to_have_count(1)
    row = stored(http, web_user, reply)
    assert row["content"] == FALLBACK_TEXT
    assert (row["provider"], row["model"]) == (FALLBACK["provider"], FALLBACK["model"])
    # The failed attempt's three tokens were dropped: only the fallback's text is shown.
    assert body_text(reply) == row["content"]
    expect(note).to_have_text(restart_note(row))
    assert row["attempts"][0]["error"].startswith("openai:")
    assert_attempts(reply, row)
    expect(reply.locator(".meta-cached")).to_have_count(0)

    # Thumbs up: pressed once the API has it.
    expect(reply.locator(".rate-up")).to_have_attribute("aria-pressed", "false")
    reply.locator(".rate-up").click()
    expect(reply.locator(".rate-up")).to_have_attribute("aria-pressed", "true")
    expect(reply.locator(".rate-down")).to_have_attribute("aria-pressed", "false")
    assert stored(http, web_user, reply)["rating"] == 1

    page.reload()
    wait_until_ready(page)
    again = page.locator(f".message[data-message-id='{row['id']}']")
    expect(again).to_have_attribute("data-status", "completed")
    expect(again.locator(".rate-up")).to_have_attribute("aria-pressed", "true")
    expect(again.locator(".rate-down")).to_have_attribute("aria-pressed", "false")
    assert body_text(again) == FALLBACK_TEXT
    # The stored reply still says where it restarted, and lists both attempts.
    expect(again.locator(".restart-note")).to_have_text([restart_note(row)])
    assert_attempts(again, row)

    # Thumbs down replaces the thumbs up; a second click clears it.
    again.locator(".rate-down").click()
    expect(again.locator(".rate-down")).to_have_attribute("aria-pressed", "true")
    expect(again.locator(".rate-up")).to_have_attribute("aria-pressed", "false")
    assert stored(http, web_user, again)["rating"] == -1
    again.locator(".rate-down").click()
    expect(again.locator(".rate-down")).to_have_attribute("aria-pressed", "false")
    assert stored(http, web_user, again)["rating"] is None
    # The user's own message has no rating buttons.
    expect(page.locator(".message[data-role=user] .rate-button")).to_have_count(0)


def test_a_cache_hit_shows_its_badge_and_its_one_attempt(
    page: Page, api_url: str, http: httpx.Client, web_user: WebUser
) -> None:
    first = routed_chat(http, web_user, "Cache miss", CACHED_MODEL, {"cache": True})
    second = routed_chat(http, web_user, "Cache hit", CACHED_MODEL, {"cache": True})
    log_in_page(page, api_url, web_user.email, web_user.password)

    open_chat(page, first)
    miss = send(page, "The same question")
    finished(miss)
    expect(miss.locator(".meta-cached")).to_have_count(0)
    expect(miss.locator("details.reply-attempts")).to_have_count(0)  # nothing to tell

    open_chat(page, second)
    hit = send(page, "The same question")
    finished(hit)
    row = stored(http, web_user, hit)
    assert row["cached"] is True and body_text(hit) == row["content"] == reply_text(8)
    expect(hit.locator(".meta-cached")).to_have_text("cached")
    details = hit.locator("details.reply-attempts")
    expect(details.locator("summary")).to_have_text("1 attempt")
    details.locator("summary").click()
    (attempt,) = row["attempts"]
    item = details.locator("li.attempt")
    expect(item.locator(".attempt-cached")).to_have_text("cached")
    expect(item.locator(".attempt-tokens")).to_have_text("0 in · 0 out")
    expect(item.locator(".attempt-cost")).to_have_text("$0")
    assert attempt["cached"] is True
    expect(hit.locator(".restart-note")).to_have_count(0)


def test_a_pool_picked_on_the_page_routes_the_chat(
    page: Page, api_url: str, http: httpx.Client, web_user: WebUser
) -> None:
    set_pool("page-pool", [(CACHED_MODEL["provider"], CACHED_MODEL["model"], 1)])

    def listed() -> bool:
        routes = http.get("/routes", headers=bearer(web_user)).json()
        return any(route["model"] == "pool:page-pool" for route in routes)

    wait_until(listed, 15, interval=0.2)
    log_in_page(page, api_url, web_user.email, web_user.password)
    page.select_option("#provider-select", ROUTES)
    page.select_option("#model-select", "pool:page-pool")
    reply = send(page, "Which deployment answers?")
    finished(reply)
    row = stored(http, web_user, reply)
    assert row["route"]["requested"] == "pool:page-pool"
    assert (row["provider"], row["model"]) == (CACHED_MODEL["provider"], CACHED_MODEL["model"])
    assert body_text(reply) == row["content"] == reply_text(8)
    chat = http.get(f"/chats/{row['chat_id']}", headers=bearer(web_user)).json()
    assert (chat["provider_name"], chat["model_name"]) == (None, "pool:page-pool")

    # Reopened, the chat shows its route in the pickers.
    open_chat(page, str(row["chat_id"]))
    expect(page.locator("#provider-select")).to_have_value(ROUTES)
    expect(page.locator("#model-select")).to_have_value("pool:page-pool")
