"""The admin page's Routing tab in a real Chromium, against the real API, worker and stubs.

An admin sets a fallback chain (reordering it on the page), a pool with weights and live
health, and an A/B experiment; each table shows what the API then holds. A chat a user then
creates joins the variant, its reply is generated there, and the experiment's results show
it in the variant's column. A refused change shows the API's reason on the page.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.browser import register_user
from tests.e2e.harness import read_sse_within
from tests.e2e.test_web_admin import answered, bearer, open_admin


def draft(page: Page, selector: str) -> list[str]:
    return [item.get_attribute("data-target") or "" for item in page.locator(selector).all()]


def test_admin_sets_a_chain_a_pool_and_an_experiment_on_the_page(
    page: Page, api_url: str, http: httpx.Client
) -> None:
    admin = register_user(http, admin=True)
    open_admin(page, api_url, admin, tab="routing")
    expect(page.locator("#chains-table tbody")).to_contain_text("No fallback chains.")

    # A chain: two fallbacks added, the second moved up, then saved.
    page.select_option("#chain-primary", "echo/echo-1")
    page.select_option("#chain-add-target", "openai/stub-model")
    page.click("#chain-add")
    page.select_option("#chain-add-target", "anthropic/stub-model")
    page.click("#chain-add")
    assert draft(page, "#chain-fallbacks li[data-target]") == [
        "openai/stub-model",
        "anthropic/stub-model",
    ]
    page.locator("#chain-fallbacks li[data-target='anthropic/stub-model'] .draft-up").click()
    assert draft(page, "#chain-fallbacks li[data-target]") == [
        "anthropic/stub-model",
        "openai/stub-model",
    ]
    with answered(page, "PUT", "/admin/routing/chains/echo/echo-1") as saved:
        page.click("#chain-save")
    assert saved.value.status == 200
    row = page.locator("#chains-table tr[data-primary='echo/echo-1']")
    expect(row.locator(".chain-targets li")).to_have_text(
        ["anthropic/stub-model", "openai/stub-model"]
    )
    expect(page.locator("#chain-error")).to_be_hidden()
    chains = http.get("/admin/routing/chains", headers=bearer(admin)).json()["data"]
    assert [(t["provider"], t["model"]) for t in chains[0]["targets"]] == [
        ("anthropic", "stub-model"),
        ("openai", "stub-model"),
    ]

    # A chain naming its own primary: the API's reason, on the page.
    row.locator(".chain-edit").click()
    page.select_option("#chain-add-target", "echo/echo-1")
    page.click("#chain-add")
    page.click("#chain-save")
    expect(page.locator("#chain-error")).to_contain_text("is the primary itself")

    # A pool: two deployments with weights, both healthy.
    page.fill("#pool-name", "duo")
    page.select_option("#pool-add-target", "openai/stub-model")
    page.fill("#pool-add-weight", "3")
    page.click("#pool-add")
    page.select_option("#pool-add-target", "anthropic/stub-model")
    page.fill("#pool-add-weight", "1")
    page.click("#pool-add")
    page.click("#pool-save")
    pool = page.locator("#pools-table tr[data-pool='duo']")
    expect(pool).to_have_count(2)
    first = page.locator("#pools-table tr[data-pool='duo'][data-target='openai/stub-model']")
    expect(first.locator(".col-weight")).to_have_text("3")
    expect(first.locator(".col-health")).to_have_text("healthy")
    expect(first).to_contain_text("pool:duo")
    pools = http.get("/admin/routing/pools", headers=bearer(admin)).json()["data"]
    assert [(d["model"], d["weight"]) for d in pools[0]["deployments"]] == [
        ("stub-model", 3),
        ("stub-model", 1),
    ]

    # An experiment: every new chat bound for echo/echo-1 goes to openai/stub-model.
    page.fill("#experiment-name", "stub trial")
    page.select_option("#experiment-control", "echo/echo-1")
    page.select_option("#experiment-variant", "openai/stub-model")
    page.fill("#experiment-share", "100")
    page.click("#experiment-create")
    experiment = page.locator("#experiments-table tr[data-name='stub trial']")
    expect(experiment.locator(".col-control")).to_have_text("echo/echo-1")
    expect(experiment.locator(".col-variant")).to_have_text("openai/stub-model")
    expect(experiment.locator(".col-share")).to_have_text("100.0%")
    expect(experiment.locator(".experiment-active")).to_be_checked()
    expect(page.locator("#experiment-error")).to_be_hidden()

    # A user's new chat joins the variant and its reply is generated there.
    user = register_user(http)
    chat = http.post("/chats", json={"provider": "echo", "model": "echo-1"}, headers=bearer(user))
    assert chat.status_code == 201, chat.text
    assert (chat.json()["model_name"], chat.json()["experiment_arm"]) == ("stub-model", "variant")
    sent = http.post(
        f"/chats/{chat.json()['id']}/messages", json={"message": "hi"}, headers=bearer(user)
    )
    assert sent.status_code == 202, sent.text
    ended = read_sse_within(http, f"/messages/{sent.json()['reply_id']}/stream", bearer(user), 30)
    assert ended.events[-1].event == "done", ended.events

    # The results, side by side.
    experiment.locator(".experiment-show-results").click()
    results = page.locator("#experiment-results-table")
    expect(page.locator("#experiment-results-title")).to_have_text("Results: stub trial")
    expect(results.locator("tr[data-metric='target'] .arm-variant")).to_have_text(
        "openai/stub-model"
    )
    expect(results.locator("tr[data-metric='chats'] .arm-variant")).to_have_text("1")
    expect(results.locator("tr[data-metric='chats'] .arm-control")).to_have_text("0")
    expect(results.locator("tr[data-metric='requests'] .arm-variant")).to_have_text("1")
    expect(results.locator("tr[data-metric='error_rate'] .arm-variant")).to_have_text("0.0%")
    expect(results.locator("tr[data-metric='requests'] .arm-control")).to_have_text("0")

    # Deactivated from its toggle: new chats stay on the control.
    with answered(page, "PATCH", "/admin/routing/experiments/") as patched:
        experiment.locator(".experiment-active").click()
    assert patched.value.status == 200
    expect(experiment.locator(".experiment-active")).not_to_be_checked()
    again = http.post("/chats", json={"provider": "echo", "model": "echo-1"}, headers=bearer(user))
    assert (again.json()["model_name"], again.json()["experiment_arm"]) == ("echo-1", None)
