"""The admin page (/admin) in a real Chromium, against the real API, worker and provider stubs.

An admin adds an OpenAI-compatible server on the page, sets its key (write-only: never shown,
never in a URL), tests it, discovers and adds a model, edits a price; a user's page already
open lists the new provider without a restart, and greys it out once the admin disables it.
A reply through the echo provider shows up in the analytics chart and tables. Users are
searched and paged by the server. Someone who is not an admin sees only #admin-denied.
"""

from __future__ import annotations

import socket
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import WebUser, log_in_page, page_log, register_user

CANARY_KEY = "sk-canary-not-a-real-key-web-admin-0001"
SLASH_MODEL = "meta-llama/Llama-3-8B"


def wait_until_ready(page: Page) -> None:
    # A selector, not wait_for_function: a string predicate is eval'd, which the CSP refuses.
    page.locator("html[data-ready='1']").wait_for(state="attached")


def open_admin(page: Page, api_url: str, user: WebUser, tab: str = "providers") -> None:
    """Log in on the chat page (the admin page reads the same token), then open /admin#tab."""
    log_in_page(page, api_url, user.email, user.password)
    page.goto(f"{api_url}/admin#{tab}")
    wait_until_ready(page)
    expect(page.locator("#admin-view")).to_be_visible()
    expect(page.locator(f"#tab-{tab}")).to_be_visible()


def bearer(user: WebUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


def answered(page: Page, method: str, path_part: str):  # type: ignore[no-untyped-def]
    """`with answered(page, "PATCH", "/admin/users/") as r:` waits for the page's request to
    be answered (a toggle or a button sends it after the click returns); `r.value.status`."""
    return page.expect_response(lambda r: r.request.method == method and path_part in r.url)


def patched_user(page: Page):  # type: ignore[no-untyped-def]
    return answered(page, "PATCH", "/admin/users/")


def provider_option(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f"#provider-select option[value='{name}']")


def refocus_provider_select(page: Page) -> None:
    """The chat page refreshes its providers when the select gets the focus."""
    page.locator("#message-input").focus()
    page.locator("#provider-select").focus()


def test_admin_adds_a_provider_that_an_open_user_page_lists(
    open_page, api_url: str, http: httpx.Client, stub_urls: dict[str, str]
) -> None:
    admin = register_user(http, admin=True)
    user = register_user(http)
    name = f"lab-{uuid.uuid4().hex[:6]}"

    user_page = open_page()
    log_in_page(user_page, api_url, user.email, user.password)
    expect(user_page.locator("#provider-select option[value='echo']")).to_have_count(1)
    expect(provider_option(user_page, name)).to_have_count(0)

    page = open_page()
    open_admin(page, api_url, admin)
    page.fill("#add-provider-name", name)
    page.fill("#add-provider-endpoint", stub_urls["openai"])
    page.fill("#add-provider-models", f"stub-model, {SLASH_MODEL}")
    page.click("#add-provider-submit")
    card = page.locator(f".provider-card[data-provider='{name}']")
    expect(card).to_be_visible()
    expect(page.locator("#add-provider-error")).to_be_hidden()
    expect(card.locator(".badge", has_text="openai_compatible")).to_have_count(1)
    expect(card.locator(f"tr[data-model='{SLASH_MODEL}']")).to_have_count(1)

    # The key: written once, shown as a hint, the input empty again.
    card.locator(".provider-key-input").fill(CANARY_KEY)
    card.locator(".provider-key-save").click()
    expect(card.locator(".provider-key-state")).to_have_text(f"API key set …{CANARY_KEY[-4:]}")
    expect(card.locator(".provider-key-input")).to_have_value("")
    card.locator(".provider-test").click()
    result = card.locator(".provider-test-result[data-ok]")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("5 models listed")

    # Discover: the stub's models, those not added yet with an Add button.
    card.locator(".provider-discover").click()
    found = card.locator(".provider-discover-list li[data-model='gpt-4o']")
    expect(found).to_be_visible()
    expect(card.locator(".provider-discover-list li[data-model='stub-model']")).to_contain_text(
        "added"
    )
    found.locator(".discover-add").click()
    expect(card.locator("tr[data-model='gpt-4o']")).to_have_count(1)
    expect(found).to_contain_text("added")

    # A price on the model whose name holds a '/' (the path keeps it).
    row = card.locator(f"tr[data-model='{SLASH_MODEL}']")
    row.locator(".model-input-price").fill("0.0015")
    row.locator(".model-output-price").fill("0.002")
    with answered(page, "PATCH", "/models/meta-llama/Llama-3-8B") as change:
        row.locator(".model-save-price").click()
    assert change.value.status == 200
    expect(card.locator(".provider-error")).to_be_hidden()
    stored = http.get(f"/admin/providers/{name}", headers=bearer(admin))
    assert stored.status_code == 200, stored.text
    models = {m["model_name"]: m for m in stored.json()["models"]}
    assert set(models) == {"stub-model", SLASH_MODEL, "gpt-4o"}
    assert Decimal(models[SLASH_MODEL]["input_cost_per_1k_tokens"]) == Decimal("0.0015")
    assert Decimal(models[SLASH_MODEL]["output_cost_per_1k_tokens"]) == Decimal("0.002")
    shown = card.locator(f"tr[data-model='{SLASH_MODEL}'] .model-input-price")
    expect(shown).to_have_value("0.0015")  # redrawn from the answer, trailing zeros dropped

    # The user's page, open all along, lists the provider (no restart, no reload).
    refocus_provider_select(user_page)
    option = provider_option(user_page, name)
    expect(option).to_have_count(1)
    expect(option).to_be_enabled()
    user_page.select_option("#provider-select", name)
    expect(user_page.locator("#model-select option[value='gpt-4o']")).to_have_count(1)

    # Disabled by the admin: greyed on the user's page, with the reason.
    card.locator(".provider-enabled").uncheck()
    expect(card.locator(".provider-status")).to_contain_text("disabled by an admin")
    refocus_provider_select(user_page)
    expect(option).to_be_disabled()
    expect(option).to_contain_text("disabled by an admin")

    # Write-only: the key is in no page, no request URL and no API answer.
    for seen in (page, user_page):
        assert CANARY_KEY not in seen.content()
        page_log(seen).assert_not_in_urls(CANARY_KEY)
    assert CANARY_KEY not in http.get("/admin/providers", headers=bearer(admin)).text


def test_errors_show_on_the_providers_page(page: Page, api_url: str, http: httpx.Client) -> None:
    admin = register_user(http, admin=True)
    open_admin(page, api_url, admin)
    page.fill("#add-provider-name", "Bad Name")
    page.fill("#add-provider-endpoint", "http://169.254.169.254/v1")
    page.click("#add-provider-submit")
    error = page.locator("#add-provider-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("provider_name")
    page.fill("#add-provider-name", f"meta-{uuid.uuid4().hex[:6]}")
    page.click("#add-provider-submit")
    expect(error).not_to_contain_text("provider_name")
    expect(error).to_be_visible()  # the metadata address is refused by the SSRF policy
    expect(page.locator(".provider-card[data-provider^='meta-']")).to_have_count(0)

    # A server that does not answer: added, but its test says why it failed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    name = f"gone-{uuid.uuid4().hex[:6]}"
    page.fill("#add-provider-name", name)
    page.fill("#add-provider-endpoint", f"http://127.0.0.1:{closed_port}/v1")
    page.fill("#add-provider-models", "some-model")
    page.click("#add-provider-submit")
    card = page.locator(f".provider-card[data-provider='{name}']")
    expect(card).to_be_visible()
    expect(error).to_be_hidden()
    card.locator(".provider-test").click()
    result = card.locator(".provider-test-result[data-ok]")
    expect(result).to_have_attribute("data-ok", "false")
    expect(result).to_contain_text("failed · unavailable")
    page_log(page).excuse(r"502 GET \S+/discover$")  # the provider did not answer: 502
    card.locator(".provider-discover").click()
    expect(card.locator(".provider-error")).to_be_visible()

    # Deleted with two clicks (no dialog): the card goes, and so does the provider.
    delete = card.locator(".provider-delete")
    delete.click()
    expect(delete).to_have_text("Delete? Click again")
    delete.click()
    expect(card).to_have_count(0)
    gone = http.get(f"/admin/providers/{name}", headers=bearer(admin))
    assert gone.status_code == 404, gone.text


def test_analytics_show_a_new_reply(open_page, api_url: str, http: httpx.Client) -> None:
    admin = register_user(http, admin=True)
    user = register_user(http)
    page = open_page()
    open_admin(page, api_url, admin, "analytics")
    chart = page.locator("#chart-requests")
    expect(chart.locator("canvas")).to_have_count(1)  # uPlot drew it
    before = int(chart.get_attribute("data-total") or "0")
    echo_rows = page.locator("#analytics-models tr[data-provider='echo'] .col-requests")
    echo_before = sum(int(t.replace(",", "")) for t in echo_rows.all_inner_texts())

    user_page = open_page()
    log_in_page(user_page, api_url, user.email, user.password)
    user_page.select_option("#provider-select", "echo")
    user_page.fill("#message-input", "count me in the analytics")
    user_page.press("#message-input", "Enter")
    reply = user_page.locator(".message[data-role=assistant]").last
    expect(reply).to_have_attribute("data-status", "completed")

    page.click("#analytics-refresh")
    expect(chart).to_have_attribute("data-total", str(before + 1))
    assert "echo" in (chart.get_attribute("data-lines") or "").split(",")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.locator("#chart-tokens canvas")).to_have_count(1)
    expect(page.locator("#chart-cost canvas")).to_have_count(1)
    row = page.locator("#analytics-models tr[data-provider='echo'][data-model='echo-1']")
    expect(row.locator(".col-requests")).to_have_text(str(echo_before + 1))
    expect(row.locator(".col-latency-p95")).to_contain_text("ms")
    top = page.locator("#analytics-users tbody tr", has_text=user.email)
    expect(top.locator(".col-requests")).to_have_text("1")

    page.select_option("#analytics-lines", "model")
    expect(chart).to_have_attribute("data-lines", "echo · echo-1")
    expect(chart).to_have_attribute("data-total", str(before + 1))

    # The range picker asks again; today is in every range.
    page.select_option("#analytics-range", "7")
    expect(page.locator("#analytics-status")).to_contain_text("7 days")
    expect(chart).to_have_attribute("data-total", str(before + 1))


def test_users_are_searched_paged_and_toggled(page: Page, api_url: str, http: httpx.Client) -> None:
    admin = register_user(http, admin=True)
    others = [register_user(http) for _ in range(27)]
    open_admin(page, api_url, admin, "users")
    rows = page.locator("#users-table tbody tr[data-user-id]")
    expect(rows).to_have_count(25)  # a page; 28 users in all
    expect(page.locator("#users-page")).to_have_text("1–25 of 28")
    expect(page.locator("#users-prev")).to_be_disabled()
    page.click("#users-next")
    expect(rows).to_have_count(3)
    expect(page.locator("#users-page")).to_have_text("26–28 of 28")
    expect(page.locator("#users-next")).to_be_disabled()
    page.click("#users-prev")
    expect(rows).to_have_count(25)

    target = others[3]
    page.fill("#users-search", target.email.upper())  # case-insensitive, on the server
    page.press("#users-search", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-email", target.email)
    with patched_user(page) as change:
        rows.first.locator(".user-active").uncheck()
    assert change.value.status == 200
    me = http.get("/users/me", headers=bearer(target))
    assert me.status_code == 401  # disabled: the token stops working at once
    with patched_user(page) as change:
        rows.first.locator(".user-admin").check()
    assert change.value.status == 200
    listed = http.get("/admin/users", params={"q": target.email}, headers=bearer(admin)).json()
    assert [(u["is_admin"], u["is_active"]) for u in listed["data"]] == [(True, False)]

    # An admin cannot remove their own admin flag: the API's 409 shows, the box goes back.
    page.fill("#users-search", admin.email)
    page.press("#users-search", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-email", admin.email)
    own = rows.first.locator(".user-admin")
    with patched_user(page) as change:
        own.click()  # not uncheck(): the box is back on as soon as the 409 comes
    assert change.value.status == 409
    expect(rows.first.locator(".user-error")).to_be_visible()
    expect(own).to_be_checked()


def test_queues_tab_refreshes_by_itself(page: Page, api_url: str, http: httpx.Client) -> None:
    """The ollama queue has no consumer here (the shared worker leaves it to the tests that
    start their own): a message sent to ollama waits in it, and the open tab shows it at its
    next refresh, with no click."""
    admin = register_user(http, admin=True)
    open_admin(page, api_url, admin, "queues")
    table = page.locator("#queues-table")
    expect(table).to_have_attribute("data-available", "true")
    queues = http.get("/admin/queues", headers=bearer(admin)).json()
    expect(table.locator("tbody tr[data-queue]")).to_have_count(len(queues["data"]))
    ollama = next(q for q in queues["data"] if q["provider"] == "ollama")
    row = table.locator(f"tr[data-provider='ollama'][data-queue='{ollama['queue']}']")
    expect(row.locator(".col-depth")).to_have_text("0")
    expect(page.locator("#queues-flower")).to_have_attribute("href", queues["flower_url"])

    chat = http.post("/chats", json={"title": "queued"}, headers=bearer(admin))
    assert chat.status_code == 201, chat.text
    sent = http.post(
        f"/chats/{chat.json()['id']}/messages",
        json={"message": "wait in the queue", "provider": "ollama", "model": "stub-model"},
        headers=bearer(admin),
    )
    assert sent.status_code == 202, sent.text
    # Refreshed every 5 s while shown: the next one shows the waiting job.
    expect(row.locator(".col-depth")).to_have_text("1", timeout=12_000)
    expect(row.locator(".col-queued")).to_have_text("1")


@pytest.mark.parametrize("who", ["user", "nobody"])
def test_non_admins_see_admin_denied(
    page: Page, api_url: str, http: httpx.Client, web_user: WebUser, who: str
) -> None:
    if who == "user":
        log_in_page(page, api_url, web_user.email, web_user.password)
    page.goto(f"{api_url}/admin")
    wait_until_ready(page)
    denied = page.locator("#admin-denied")
    expect(denied).to_be_visible()
    expect(denied.locator("a")).to_have_attribute("href", "/")
    expect(page.locator("#admin-view")).to_be_hidden()
    api_calls = [urlsplit(url).path for url in page_log(page).request_urls]
    assert not [path for path in api_calls if path.startswith("/admin/")]  # no admin data asked
    if who == "user":
        assert http.get("/admin/providers", headers=bearer(web_user)).status_code == 403
