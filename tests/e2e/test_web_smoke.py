"""The chat page in a real Chromium: it loads under its Content-Security-Policy, inline script
cannot run, and an account is made and used through the login form.

The browser fixtures (tests/e2e/browser.py) fail each test whose page logged a JavaScript
error, a CSP violation, a dialog, a 5xx or a token in a URL; the last test here shows they do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from playwright.sync_api import Page

from tests.e2e.browser import (
    PASSWORD,
    WebUser,
    log_in_page,
    page_log,
    register_in_page,
    wait_for_log,
)

READY = "document.documentElement.dataset.ready === '1'"


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_page_loads_under_a_policy_without_inline_script(page: Page, api_url: str) -> None:
    response = page.goto(api_url + "/")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)
    page.wait_for_function(READY)
    assert page.locator("#auth-view").is_visible()
    assert page.locator("#app-view").is_hidden()
    # Every script and stylesheet the page asked for came from its own origin.
    assert page_log(page).request_urls
    assert all(url.startswith(api_url + "/") for url in page_log(page).request_urls)


def test_injected_inline_script_and_handler_are_blocked(page: Page, api_url: str) -> None:
    log = page_log(page)
    log.excuse(r"script-src")  # the violations this test provokes
    page.goto(api_url + "/")
    page.wait_for_function(READY)
    page.evaluate(
        """() => {
          window.inlineRan = false;
          window.handlerRan = false;
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.head.appendChild(script);
          const holder = document.createElement("div");
          holder.innerHTML =
            '<img src="/static/no-such.png" onerror="window.handlerRan = true">';
          document.body.appendChild(holder);
        }"""
    )
    wait_for_log(page, lambda: len(log.csp_violations) >= 2)
    assert page.evaluate("[window.inlineRan, window.handlerRan]") == [False, False]
    blocked = "\n".join(log.csp_violations)
    assert "script-src-elem blocked inline" in blocked
    assert "script-src-attr blocked inline" in blocked


def test_register_through_the_form(page: Page, api_url: str, http: httpx.Client) -> None:
    email = f"web-{uuid.uuid4().hex[:10]}@example.com"
    register_in_page(page, api_url, email, PASSWORD)
    assert page.locator("#auth-view").is_hidden()
    assert page.locator("#user-email").inner_text() == email
    token = page.evaluate("localStorage.getItem('switchboard.token')")
    assert token
    me = http.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["email"] == email
    # The session outlives a reload, and the token never travelled in a URL.
    page.reload()
    page.locator("#app-view").wait_for(state="visible")
    page_log(page).assert_not_in_urls(token)


def test_log_in_through_the_form(page: Page, api_url: str, web_user: WebUser) -> None:
    page.goto(api_url + "/")
    page.wait_for_function(READY)
    page.fill("#auth-email", web_user.email)
    page.fill("#auth-password", "not the password")
    page.click("#login-button")
    page.locator("#auth-error").wait_for(state="visible")
    assert page.locator("#auth-error").inner_text().strip()
    assert page.locator("#app-view").is_hidden()

    log_in_page(page, api_url, web_user.email, web_user.password)
    assert page.locator("#user-email").inner_text() == web_user.email
    page_log(page).assert_not_in_urls(web_user.token)


def test_the_fixtures_catch_what_fails_a_page(open_page: Callable[[], Page], api_url: str) -> None:
    page = open_page()
    log = page_log(page)
    page.goto(api_url + "/")
    page.evaluate(
        """() => {
          console.error("logged on purpose");
          setTimeout(() => { throw new Error("thrown on purpose"); });
          setTimeout(() => alert("alert on purpose"));
          fetch("/static/x?t=eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl").catch(() => {});
        }"""
    )
    wait_for_log(page, lambda: len(log.problems()) >= 4)
    found = "\n".join(log.problems())
    assert "console error: logged on purpose" in found
    assert "uncaught exception: thrown on purpose" in found
    assert "dialog: alert: alert on purpose" in found
    assert "JWT in a request URL" in found
    log.excuse("on purpose|JWT in a request URL")
    assert log.problems() == []
