"""The chat page's weight and time to interactive, in Debian's Chromium (issue 14 item 5).

    .venv/bin/python -m tests.benchmarks.web_page               # 20 cold loads of each kind
    .venv/bin/python -m tests.benchmarks.web_page --loads 50 --out /tmp/web_page.json
    .venv/bin/python -m tests.benchmarks.web_page --experiment-modulepreload

Recreates BENCH_WEB_DATABASE_URL (default database `switchboard_bench_web` on 127.0.0.1:5432),
starts one uvicorn API on loopback (no worker: loading the page queues nothing), registers a
user with 30 chats, and launches one headless Chromium (`chromium` on PATH) through
Playwright. Each load is cold: a new browser context (empty cache and storage) per load. The
kinds of load, interleaved:

* logged out: `/` shows the login form (a first visit);
* logged in: the token is in localStorage before the page runs, so `/` opens the app view
  (the user's chat list and the providers come from the API);
* floor (calibration): a near-empty HTML page with one module that sets `data-ready`, both
  answered by Playwright from this process: what Chromium itself needs on this machine;
* with --experiment-modulepreload, logged out again with a `<link rel="modulepreload">` for
  every module the page loads added to its HTML on the way (not what the API serves);

Per load it takes:

* bytes: the uncompressed body of every response (`response.body()`), split into the page's
  own files (document, scripts, stylesheets, images, fonts) and API answers (fetch); also the
  bytes on the wire as Chromium reports them (`request.sizes()`, headers included);
* time to interactive: from navigation start (the page's `performance.timeOrigin`) to the
  moment the page's module sets `document.documentElement.dataset.ready = "1"` (after its
  handlers are wired and the login form or app view is shown), taken in the page with
  `performance.now()` by a MutationObserver an init script installs; the view shown is
  checked to be visible; and the resource waterfall of the first load.

One load of each kind runs first, unmeasured (the API's first answers warm its imports).
Targets: under 150 KB for the page's files on the first load, under 300 ms to interactive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Response, Route, sync_playwright

from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.harness import base_env, start_api
from tests.helpers import recreate_migrated_database

DATABASE_URL = os.environ.get(
    "BENCH_WEB_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_bench_web",
)
# The API builds a Redis client at start-up; logging in counts attempts there. Not flushed.
REDIS_URL = os.environ.get("BENCH_WEB_REDIS_URL", "redis://127.0.0.1:6379/12")
CHATS = 30
PAGE_TYPES = {"document", "script", "stylesheet", "image", "font"}
TARGET_BYTES = 150 * 1024
TARGET_MS = 300.0

# Runs before any of the page's scripts: notes when `data-ready` appears on <html>.
READY_OBSERVER = """
new MutationObserver((_, observer) => {
  if (document.documentElement.dataset.ready === "1") {
    window.__readyAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { attributes: true, attributeFilter: ["data-ready"], subtree: true });
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed_user(base_url: str) -> str:
    """A user with CHATS chats; returns its bearer token."""
    email = f"bench-web-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        registered = client.post("/auth/register", json={"email": email, "password": password})
        registered.raise_for_status()
        answer = client.post("/auth/token", data={"username": email, "password": password})
        answer.raise_for_status()
        token = answer.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for n in range(CHATS):
            client.post("/chats", json={"title": f"Chat {n}"}, headers=headers).raise_for_status()
    return str(token)


@dataclass(frozen=True)
class Kind:
    token: str | None = None
    # EXPERIMENT: these module paths get <link rel="modulepreload"> in the HTML (not shipped).
    preload: tuple[str, ...] = ()
    # Calibration: an empty page whose one module sets data-ready, served from this process.
    floor: bool = False


FLOOR_HTML = (
    '<!doctype html><html><head><script type="module" src="/floor.js"></script></head>'
    "<body><div id=auth-view>floor</div></body></html>"
)
FLOOR_JS = 'document.documentElement.dataset.ready = "1";'


def with_modulepreload(html: str, modules: tuple[str, ...]) -> str:
    links = "".join(f'<link rel="modulepreload" href="{path}">' for path in modules)
    return html.replace("</head>", links + "</head>", 1)


def answer_with(body: str, content_type: str) -> Callable[[Route], None]:
    # (Playwright passes a handler as many arguments as it takes: one here, the route.)
    def answer(route: Route) -> None:
        route.fulfill(body=body, content_type=content_type)

    return answer


def one_load(browser: Browser, base_url: str, kind: Kind) -> dict[str, Any]:
    context = browser.new_context()
    token = kind.token
    try:
        if token is not None:
            context.add_init_script(
                f"localStorage.setItem('switchboard.token', {json.dumps(token)})"
            )
        context.add_init_script(READY_OBSERVER)
        page = context.new_page()
        responses: list[Response] = []
        errors: list[str] = []
        page.on("response", lambda response: responses.append(response))
        page.on("pageerror", lambda error: errors.append(error.message))
        if kind.preload:
            # The HTML passes through this process (route.fetch), which only delays it.
            def preload(route: Route) -> None:
                original = route.fetch()
                route.fulfill(
                    response=original, body=with_modulepreload(original.text(), kind.preload)
                )

            page.route(base_url + "/", preload)
        if kind.floor:
            page.route(base_url + "/", answer_with(FLOOR_HTML, "text/html"))
            page.route(base_url + "/floor.js", answer_with(FLOOR_JS, "text/javascript"))
        page.goto(base_url + "/")
        page.wait_for_function("() => window.__readyAt !== undefined", polling=10)
        ready_ms = float(page.evaluate("window.__readyAt"))
        view = "#app-view" if token is not None else "#auth-view"
        if not page.locator(view).is_visible():
            raise RuntimeError(f"ready, but {view} is not visible")
        navigation = page.evaluate(
            """() => {
              const n = performance.getEntriesByType("navigation")[0];
              return {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd};
            }"""
        )
        waterfall = page.evaluate(
            """() => performance.getEntriesByType("resource").map((e) => [
              new URL(e.name).pathname, Math.round(e.startTime), Math.round(e.responseEnd)])"""
        )
        page.wait_for_load_state("networkidle")
        if errors:
            raise RuntimeError(f"the page threw: {errors}")
        files: dict[str, int] = {}
        api_bytes = wire_bytes = 0
        for response in responses:
            if response.status >= 400:
                raise RuntimeError(f"{response.status} for {response.url}")
            size = len(response.body())
            sizes = response.request.sizes()
            wire_bytes += sizes["responseBodySize"] + sizes["responseHeadersSize"]
            if response.request.resource_type in PAGE_TYPES:
                files[response.url.removeprefix(base_url)] = size
            else:
                api_bytes += size
        return {
            "ready_ms": ready_ms,
            **navigation,
            "files": files,
            "page_bytes": sum(files.values()),
            "api_bytes": api_bytes,
            "wire_bytes": wire_bytes,
            "requests": len(responses),
            "waterfall": waterfall,
        }
    finally:
        context.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(loads: list[dict[str, Any]]) -> dict[str, Any]:
    ready = [load["ready_ms"] for load in loads]
    first = loads[0]
    return {
        "loads": len(loads),
        "page_bytes_first_load": first["page_bytes"],
        "files_first_load": first["files"],
        "api_bytes_first_load": first["api_bytes"],
        "wire_bytes_first_load": first["wire_bytes"],
        "requests_first_load": first["requests"],
        # [path, start, end] in ms from navigation start, of the first load.
        "waterfall_first_load": first["waterfall"],
        "page_bytes_all_loads_equal": len({load["page_bytes"] for load in loads}) == 1,
        "ready_ms": {
            "p50": statistics.median(ready),
            "p95": percentile(ready, 0.95),
            "max": max(ready),
            "min": min(ready),
        },
        "dom_content_loaded_ms_p50": statistics.median(
            load["dom_content_loaded_ms"] for load in loads
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=20, help="cold loads of each kind")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    parser.add_argument(
        "--experiment-modulepreload",
        action="store_true",
        help="EXPERIMENT: also load / with <link rel=modulepreload> for every module",
    )
    args = parser.parse_args()
    if not 1 <= args.loads <= 200:
        parser.error("--loads: 1 to 200")
    chromium = shutil.which("chromium")
    if chromium is None:
        log("chromium is not on PATH (apt-get install chromium)")
        return 1

    recreate_migrated_database(DATABASE_URL)
    env = base_env(
        ENVIRONMENT="test",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        DEFAULT_PROVIDER="echo",
        ECHO_MODELS="echo-1",
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as logs, sync_playwright() as playwright:
        api, base_url = start_api(env, Path(logs))
        try:
            token = seed_user(base_url)
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            results["chromium"] = browser.version
            kinds = {"logged_out": Kind(), "logged_in": Kind(token), "floor": Kind(floor=True)}
            # Not counted: the API's first answers warm its imports.
            warm_up = {name: one_load(browser, base_url, kind) for name, kind in kinds.items()}
            if args.experiment_modulepreload:
                html = httpx.get(base_url + "/").text
                modules = tuple(
                    path
                    for path in warm_up["logged_out"]["files"]
                    if path.endswith(".js") and f'<script src="{path}"' not in html
                )
                kinds["logged_out_modulepreload"] = Kind(preload=modules)
                one_load(browser, base_url, kinds["logged_out_modulepreload"])
            loads: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
            started = time.monotonic()
            for n in range(args.loads):
                for name, kind in kinds.items():
                    loads[name].append(one_load(browser, base_url, kind))
                log(f"load {n + 1}/{args.loads}")
            results["seconds"] = round(time.monotonic() - started, 1)
            browser.close()
        finally:
            api.stop()
    for kind, measured in loads.items():
        results[kind] = summarise(measured)
    results["load_average"] = os.getloadavg()
    results["cores"] = os.cpu_count()
    results["python"] = platform.python_version()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    for kind in kinds:
        summary = results[kind]
        ready = summary["ready_ms"]
        page_kb = summary["page_bytes_first_load"] / 1024
        log(
            f"{kind}: page files {page_kb:.1f} KB (target < {TARGET_BYTES // 1024} KB), "
            f"API {summary['api_bytes_first_load'] / 1024:.1f} KB, "
            f"wire {summary['wire_bytes_first_load'] / 1024:.1f} KB, "
            f"{summary['requests_first_load']} requests; interactive p50 {ready['p50']:.0f} ms, "
            f"p95 {ready['p95']:.0f} ms, max {ready['max']:.0f} ms (target < {TARGET_MS:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
