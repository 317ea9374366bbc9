"""Real-browser fixtures: Debian's Chromium driven by Playwright, against the e2e API.

The browser is the system's (`chromium` on PATH; `.ci/run` installs Debian's package when it
is missing), never one `playwright install` downloads. Without it the tests fail, not skip.

* `browser` (package scope): one headless Chromium for the package's tests.
* `open_page()` (factory fixture): a new browser context and page on the e2e API
  (`base_url` = `api_url`, so `page.goto("/")`), watched: `page_log(page)` is its `PageLog`.
* `page`: one such page.

At teardown a test fails if any of its pages logged a JavaScript error (console error or
uncaught exception), a Content-Security-Policy violation, opened a dialog (`alert()`: how
injected script shows itself), got a 5xx answer, or asked for a URL carrying a JWT (the token
is a bearer header, never in a URL). A test that provokes one on purpose says so with
`page_log(page).excuse(pattern)`.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    Response,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Playwright's own default is 30 s; the slowest expected wait here (a 2.5 s token) is far below.
DEFAULT_TIMEOUT_MS = 15_000
PASSWORD = "correct horse battery"
# A JWT (the API's bearer token): three base64url parts, the first a JSON object ('{"' -> eyJ).
JWT_PATTERN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
# Chromium logs failed loads (a 401 to a wrong password, an aborted stream) as console errors;
# those are network outcomes, checked through the responses (5xx), not JavaScript errors.
NETWORK_CONSOLE_PREFIX = "Failed to load resource"

# Reports `securitypolicyviolation` events to Python (init scripts are exempt from the CSP).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__switchboardCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"}` +
    ` at ${event.sourceFile || "?"}:${event.lineNumber}` +
    (event.sample ? ` (${event.sample})` : ""));
});
"""


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not on PATH: the browser tests need Debian's Chromium "
            "(apt-get install chromium; .ci/run does this). Not `playwright install`."
        )
    return path


@dataclass
class PageLog:
    """What one page did: every request URL, and the problems that fail the test."""

    request_urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    # Every answer, "status METHOD url", and the requests still waiting for one: what a
    # failed wait reports.
    responses: list[str] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    excused: list[re.Pattern[str]] = field(default_factory=list)

    def excuse(self, pattern: str) -> None:
        """Problems matching `pattern` (a regex, searched) do not fail the test."""
        self.excused.append(re.compile(pattern))

    def problems(self) -> list[str]:
        found = [
            *(f"console error: {text}" for text in self.console_errors),
            *(f"uncaught exception: {text}" for text in self.page_errors),
            *(f"CSP violation: {text}" for text in self.csp_violations),
            *(f"dialog: {text}" for text in self.dialogs),
            *(f"server error: {text}" for text in self.server_errors),
            *(
                f"JWT in a request URL: {url}"
                for url in self.request_urls
                if JWT_PATTERN.search(url)
            ),
        ]
        return [p for p in found if not any(pattern.search(p) for pattern in self.excused)]

    def assert_not_in_urls(self, secret: str) -> None:
        leaked = [url for url in self.request_urls if secret in url]
        assert not leaked, f"secret found in request URLs: {leaked}"


_LOGS: dict[int, PageLog] = {}


def page_log(page: Page) -> PageLog:
    """The log of a page `open_page()` opened."""
    return _LOGS[id(page)]


def watch(page: Page, log: PageLog) -> None:
    """Record `page`'s requests, errors, CSP violations, dialogs and 5xx answers in `log`."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(NETWORK_CONSOLE_PREFIX):
            where = message.location
            log.console_errors.append(
                f"{message.text} ({where.get('url')}:{where.get('lineNumber')})"
            )

    def on_response(response: Response) -> None:
        answered = f"{response.status} {response.request.method} {response.url}"
        log.responses.append(answered)
        log.waiting.pop(id(response.request), None)
        if response.status >= 500:
            log.server_errors.append(answered)

    def on_request(request: Request) -> None:
        log.request_urls.append(request.url)
        log.waiting[id(request)] = f"{request.method} {request.url}"

    def on_dialog(dialog: Dialog) -> None:
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.page_errors.append(f"{error.message}\n{error.stack}"))
    page.on("crash", lambda _: log.page_errors.append("the page crashed"))
    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", lambda request: log.waiting.pop(id(request), None))
    page.expose_function("__switchboardCspViolation", lambda text: log.csp_violations.append(text))
    page.add_init_script(_CSP_LISTENER)


def wait_for_log(page: Page, condition: Callable[[], bool], seconds: float = 10) -> None:
    """Let `page`'s events reach Python until `condition()` holds (they arrive while Playwright
    waits); fails after `seconds`."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        page.wait_for_timeout(20)
    assert condition(), f"page log condition not met within {seconds}s: {page_log(page)}"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser, api_url: str, http: httpx.Client) -> Iterator[Callable[[], Page]]:
    """`open_page()`: a watched page in a context of its own (no shared storage), at api_url.

    Depends on `http` for the worker and the per-test cleanup of tables and token streams."""
    contexts = []
    pages: list[Page] = []

    def open_one() -> Page:
        context = browser.new_context(base_url=api_url)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        _LOGS[id(page)] = PageLog()
        watch(page, _LOGS[id(page)])
        pages.append(page)
        return page

    yield open_one
    problems = [f"page {n}: {p}" for n, page in enumerate(pages) for p in page_log(page).problems()]
    for context in contexts:
        context.close()
    for page in pages:
        _LOGS.pop(id(page), None)
    if problems:
        pytest.fail("the page reported problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def page(open_page: Callable[[], Page]) -> Page:
    return open_page()


class WebUser(NamedTuple):
    email: str
    password: str
    token: str


def register_user(http: httpx.Client, *, admin: bool = False, password: str = PASSWORD) -> WebUser:
    """A new user registered and logged in through the API (`admin=True`: made an admin in the
    database, as no API route grants it)."""
    email = f"web-{uuid.uuid4().hex[:10]}@example.com"
    response = http.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    if admin:
        from sqlalchemy import update

        from shared.db import session_scope
        from shared.models import User

        with session_scope() as session:
            session.execute(update(User).where(User.email == email).values(is_admin=True))
    token = http.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return WebUser(email, password, token.json()["access_token"])


@pytest.fixture
def web_user(http: httpx.Client) -> WebUser:
    return register_user(http)


def _submit_auth_form(page: Page, api_url: str, email: str, password: str, button: str) -> None:
    page.goto(api_url + "/")
    page.locator("#auth-view").wait_for(state="visible")
    page.fill("#auth-email", email)
    page.fill("#auth-password", password)
    page.click(button)
    try:
        page.locator("#app-view").wait_for(state="visible")
    except PlaywrightTimeoutError:
        log = page_log(page)
        error = page.locator("#auth-error")
        pytest.fail(
            "the app view did not show after the auth form was sent; "
            f"auth error: {error.text_content() if error.is_visible() else None!r}; "
            f"answers: {log.responses[-12:]}; still waiting: {list(log.waiting.values())}",
            pytrace=False,
        )


def log_in_page(page: Page, api_url: str, email: str, password: str) -> None:
    """Log in through the page's form; returns once the app view shows."""
    _submit_auth_form(page, api_url, email, password, "#login-button")


def register_in_page(page: Page, api_url: str, email: str, password: str = PASSWORD) -> None:
    """Create an account through the page's form; returns once the app view shows."""
    _submit_auth_form(page, api_url, email, password, "#register-button")
