"""The chat page in a real Chromium, against the real API, worker and provider stubs.

What a user checks: replies stream in steps and end on the stored text, Stop cancels, a
reload or a dropped connection mid-reply continues the same reply with nothing lost or
repeated, errors show with a Retry, model output is text (never HTML), and the chat list,
provider pickers, system prompts and per-message overrides do what they say.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Locator, Page, Request

from tests.e2e.browser import WebUser, log_in_page, register_user
from tests.stubs import reply_text

SLOW_MODEL = "stub-model+tokens=30+delay=150"
SLOW_TEXT = reply_text(30)


@pytest.fixture
def chat_page(page: Page, api_url: str, web_user: WebUser) -> Page:
    log_in_page(page, api_url, web_user.email, web_user.password)
    return page


def wait_until_ready(page: Page) -> None:
    # A selector, not wait_for_function: a string predicate is eval'd, which the page's CSP
    # refuses.
    page.locator("html[data-ready='1']").wait_for(state="attached")


def pick(page: Page, provider: str, model: str = "") -> None:
    page.select_option("#provider-select", provider)
    if model:
        page.select_option("#model-select", model)


def send(page: Page, text: str) -> Locator:
    """Types `text`, presses Enter, and answers the new reply's element."""
    before = page.locator(".message[data-role=assistant]").count()
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    replies = page.locator(".message[data-role=assistant]")
    replies.nth(before).wait_for()
    return replies.nth(before)


def body_text(reply: Locator) -> str:
    return reply.locator(".message-body").inner_text()


def watch_text(page: Page, reply: Locator, until: Callable[[str, str], bool]) -> list[str]:
    """Every distinct text the reply showed, read each 30 ms, until `until(text, status)`."""
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text, status = body_text(reply), reply.get_attribute("data-status") or ""
        if not seen or seen[-1] != text:
            seen.append(text)
        if until(text, status):
            return seen
        page.wait_for_timeout(30)
    raise AssertionError(f"the reply never reached the state waited for; it showed {seen[-3:]}")


def stored(http: httpx.Client, user: WebUser, reply: Locator) -> dict:
    """The reply the element shows, as the API has it."""
    answer = http.get(
        f"/messages/{reply.get_attribute('data-message-id')}",
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_growing_prefixes(seen: list[str], final: str) -> None:
    """Each text shown was the start of the final one, and never shrank: nothing repeated."""
    for earlier, later in zip(seen, seen[1:], strict=False):
        assert later.startswith(earlier), (earlier, later)
    assert all(final.startswith(text) for text in seen), seen


def test_a_reply_streams_in_steps_and_shows_its_figures(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    pick(chat_page, "openai", SLOW_MODEL)
    reply = send(chat_page, "Tell me a story")
    seen = watch_text(chat_page, reply, lambda _text, status: status == "completed")
    steps = [text for text in seen if text]
    # 30 tokens 150 ms apart: the page showed many partial texts before the whole one.
    assert len(steps) >= 5, steps
    assert_growing_prefixes(seen, SLOW_TEXT)
    row = stored(http, web_user, reply)
    assert body_text(reply) == row["content"] == SLOW_TEXT
    reply.locator(".meta-duration").wait_for()
    meta = reply.locator(".message-meta")
    assert meta.locator(".meta-provider").inner_text() == "openai"
    assert meta.locator(".meta-model").inner_text() == SLOW_MODEL
    assert meta.locator(".meta-tokens").inner_text().endswith("30 out")
    assert meta.locator(".meta-cost").is_visible()
    assert meta.locator(".meta-ttft").inner_text().startswith("first token")
    assert meta.locator(".message-status").inner_text() == "completed"
    assert chat_page.locator("#stop-button").is_hidden()


def test_stop_cancels_the_running_reply(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    pick(chat_page, "openai", SLOW_MODEL)
    reply = send(chat_page, "Go on")
    watch_text(chat_page, reply, lambda text, _status: text.count("tok") >= 3)
    chat_page.click("#stop-button")
    reply.locator(".message-status", has_text="cancelled").wait_for()
    row = stored(http, web_user, reply)
    assert row["status"] == "cancelled"
    assert 3 <= row["content"].count("tok") < 30
    assert body_text(reply) == row["content"]
    assert chat_page.locator("#stop-button").is_hidden()


def test_a_reload_mid_reply_continues_the_same_reply_to_the_stored_text(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    pick(chat_page, "openai", SLOW_MODEL)
    reply = send(chat_page, "Keep going")
    reply_id = reply.get_attribute("data-message-id")
    before = watch_text(chat_page, reply, lambda text, _status: text.count("tok") >= 5)
    chat_page.reload()
    wait_until_ready(chat_page)
    again = chat_page.locator(f".message[data-message-id='{reply_id}']")
    again.wait_for()
    # Reloaded while running: the page shows it unfinished, then streams it on.
    assert again.get_attribute("data-status") in {"queued", "running"}
    after = watch_text(chat_page, again, lambda _text, status: status == "completed")
    assert_growing_prefixes(after, SLOW_TEXT)
    assert SLOW_TEXT.startswith(before[-1])
    assert body_text(again) == stored(http, web_user, again)["content"] == SLOW_TEXT
    assert chat_page.locator(".message[data-role=assistant]").count() == 1


def test_coming_back_to_a_tab_resumes_after_the_last_event(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    streams: list[Request] = []
    chat_page.on("request", lambda r: streams.append(r) if r.url.endswith("/stream") else None)
    pick(chat_page, "openai", SLOW_MODEL)
    reply = send(chat_page, "Background me")
    watch_text(chat_page, reply, lambda text, _status: text.count("tok") >= 4)
    # What the browser does when the tab is hidden, then shown again.
    chat_page.evaluate(
        """() => {
          for (const state of ["hidden", "visible"]) {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
          }
        }"""
    )
    after = watch_text(chat_page, reply, lambda _text, status: status == "completed")
    assert_growing_prefixes(after, SLOW_TEXT)
    assert body_text(reply) == stored(http, web_user, reply)["content"]
    assert body_text(reply) == SLOW_TEXT
    # The second connection asked for the events after the last one the page had.
    assert len(streams) >= 2
    assert "last-event-id" not in streams[0].headers
    assert streams[1].headers.get("last-event-id")


def test_a_failing_model_shows_the_error_and_a_retry(chat_page: Page) -> None:
    pick(chat_page, "openai", "fault-401")
    reply = send(chat_page, "Will this work?")
    reply.locator(".message-status", has_text="failed").wait_for()
    error = reply.locator(".message-error")
    assert error.is_visible() and error.inner_text().strip()
    retry = reply.locator(".retry-button")
    assert retry.is_visible()
    retry.click()
    # The same message is sent again, to the same provider and model.
    second = chat_page.locator(".message[data-role=assistant]").nth(1)
    second.locator(".message-status", has_text="failed").wait_for()
    assert second.locator(".meta-model").inner_text() == "fault-401"
    users = chat_page.locator(".message[data-role=user] .message-body")
    assert users.all_inner_texts() == ["Will this work?", "Will this work?"]


def test_html_in_model_output_is_shown_as_text(chat_page: Page) -> None:
    pick(chat_page, "echo")
    markup = "<img src=x onerror=alert(1)> and **bold**"
    reply = send(chat_page, markup)
    reply.locator(".message-status", has_text="completed").wait_for()
    body = reply.locator(".message-body")
    assert "<img src=x onerror=alert(1)>" in body.inner_text()
    assert body.locator("img").count() == 0
    # Markdown still renders: the same text's **bold** is bold.
    assert body.locator("strong").inner_text() == "bold"
    assert chat_page.evaluate("document.querySelectorAll('#messages img').length") == 0


def test_enter_sends_and_shift_enter_adds_a_line(chat_page: Page) -> None:
    pick(chat_page, "echo")
    chat_page.click("#message-input")
    chat_page.keyboard.type("first line")
    chat_page.keyboard.press("Shift+Enter")
    chat_page.keyboard.type("second line")
    assert chat_page.locator(".message").count() == 0
    chat_page.keyboard.press("Enter")
    user = chat_page.locator(".message[data-role=user] .message-body")
    user.wait_for()
    assert user.inner_text() == "first line\nsecond line"
    assert chat_page.input_value("#message-input") == ""


def test_chat_list_newest_first_rename_and_delete(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    pick(chat_page, "echo")
    send(chat_page, "first chat").locator(".message-status", has_text="completed").wait_for()
    chat_page.click("#new-chat")
    send(chat_page, "second chat").locator(".message-status", has_text="completed").wait_for()
    titles = chat_page.locator("#chat-list .chat-open")
    assert titles.all_inner_texts() == ["second chat", "first chat"]

    item = chat_page.locator("#chat-list .chat-item").nth(1)
    chat_id = item.get_attribute("data-chat-id")
    item.hover()
    item.locator(".chat-rename").click()
    chat_page.fill(".chat-title-input", "renamed")
    chat_page.press(".chat-title-input", "Enter")
    chat_page.locator("#chat-list .chat-open", has_text="renamed").wait_for()
    headers = {"Authorization": f"Bearer {web_user.token}"}
    assert http.get(f"/chats/{chat_id}", headers=headers).json()["title"] == "renamed"

    item = chat_page.locator(f"#chat-list .chat-item[data-chat-id='{chat_id}']")
    item.hover()
    item.locator(".chat-delete").click()
    item.locator(".chat-delete", has_text="Delete?").click()
    item.wait_for(state="detached")
    assert http.get(f"/chats/{chat_id}", headers=headers).status_code == 404
    chat_page.reload()
    wait_until_ready(chat_page)
    assert chat_page.locator("#chat-list .chat-open").all_inner_texts() == ["second chat"]


def test_an_opened_chat_shows_its_history_and_settings(chat_page: Page) -> None:
    pick(chat_page, "openai", "stub-model")
    send(chat_page, "remember me").locator(".message-status", has_text="completed").wait_for()
    chat_page.click("#new-chat")
    assert chat_page.locator(".message").count() == 0
    chat_page.locator("#chat-list .chat-open", has_text="remember me").click()
    chat_page.locator(".message[data-role=user]", has_text="remember me").wait_for()
    assert chat_page.input_value("#provider-select") == "openai"
    assert chat_page.input_value("#model-select") == "stub-model"
    assert body_text(chat_page.locator(".message[data-role=assistant]")) == reply_text(8)


def test_a_disabled_provider_is_greyed_with_its_reason(
    chat_page: Page, http: httpx.Client, stub_urls: dict[str, str]
) -> None:
    admin = register_user(http, admin=True)
    headers = {"Authorization": f"Bearer {admin.token}"}
    created = http.post(
        "/admin/providers",
        json={
            "provider_name": "lab-off",
            "adapter": "openai_compatible",
            "api_endpoint": stub_urls["openai"],
            "models": ["stub-model"],
            "is_enabled": False,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    try:
        chat_page.focus("#provider-select")  # opening the picker asks for the newest list
        option = chat_page.locator("#provider-select option[value='lab-off']")
        option.wait_for(state="attached")
        assert option.is_disabled()
        listed = {p["name"]: p for p in http.get("/providers", headers=headers).json()}
        reason = listed["lab-off"]["unavailable_reason"]
        assert reason and option.inner_text() == f"lab-off ({reason})"
        assert not chat_page.locator("#provider-select option[value='openai']").is_disabled()
    finally:
        http.delete("/admin/providers/lab-off", headers=headers)


def test_a_message_can_use_another_provider_than_its_chat(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    pick(chat_page, "echo")
    first = send(chat_page, "to the chat's provider")
    first.locator(".message-status", has_text="completed").wait_for()
    chat_page.click("#message-options summary")
    chat_page.select_option("#override-provider", "openai")
    chat_page.select_option("#override-model", "stub-model")
    second = send(chat_page, "to another one")
    second.locator(".message-status", has_text="completed").wait_for()
    assert first.locator(".meta-provider").inner_text() == "echo"
    assert second.locator(".meta-provider").inner_text() == "openai"
    assert body_text(second) == reply_text(8)
    chat_id = chat_page.locator("#chat-list .chat-item").first.get_attribute("data-chat-id")
    chat = http.get(f"/chats/{chat_id}", headers={"Authorization": f"Bearer {web_user.token}"})
    assert chat.json()["provider_name"] == "echo"


def test_system_prompts_are_created_and_the_default_is_picked_for_new_chats(
    chat_page: Page, http: httpx.Client, web_user: WebUser
) -> None:
    chat_page.click("#manage-prompts")
    chat_page.fill("#prompt-name", "Pirate")
    chat_page.fill("#prompt-content", "Talk like a pirate.")
    chat_page.check("#prompt-default")
    chat_page.click("#prompt-save")
    chat_page.locator("#prompt-list li", has_text="Pirate (default)").wait_for()
    chat_page.click("#prompt-close")
    chat_page.click("#new-chat")
    selected = chat_page.locator("#system-prompt-select option:checked")
    assert selected.inner_text() == "Pirate (default)"
    pick(chat_page, "openai", "stub-model")
    send(chat_page, "Ahoy").locator(".message-status", has_text="completed").wait_for()
    headers = {"Authorization": f"Bearer {web_user.token}"}
    prompts = http.get("/system-prompts", headers=headers).json()["data"]
    chat_id = chat_page.locator("#chat-list .chat-item").first.get_attribute("data-chat-id")
    chat = http.get(f"/chats/{chat_id}", headers=headers).json()
    assert chat["system_prompt_id"] == prompts[0]["id"]

    # Edited in the dialog: the stored prompt changes.
    chat_page.click("#manage-prompts")
    chat_page.locator("#prompt-list li", has_text="Pirate").locator(".prompt-edit").click()
    chat_page.fill("#prompt-content", "Talk like a parrot.")
    chat_page.click("#prompt-save")
    chat_page.wait_for_timeout(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        content = http.get("/system-prompts", headers=headers).json()["data"][0]["content"]
        if content == "Talk like a parrot.":
            break
        chat_page.wait_for_timeout(50)
    assert content == "Talk like a parrot."
