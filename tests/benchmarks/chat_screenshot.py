"""The chat screenshot of the docs (docs/screenshots/chat.png), taken in Chromium.

    .venv/bin/python -m tests.benchmarks.chat_screenshot [--out /tmp/chat.png]

Starts `switchboard dev` (the README's quick start: a SQLite file in a temporary directory,
an embedded Redis, the built-in echo provider) on a free loopback port, registers on the
page, sends two messages and takes the picture at 1280 px wide once both replies are done.
A script, not a test step, so CI never writes into docs/.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "screenshots" / "chat.png"
MESSAGES = [
    "What can I ask here?",
    "Try **markdown**:\n\n- a list\n- `inline code`\n\n```python\nprint('hello')\n```",
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dev(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'screenshot.db'}",
        # A port nothing answers on: dev then starts an embedded Redis of its own.
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        # Made per run: the tokens signed with it die with the temporary database.
        SECRET_KEY=secrets.token_urlsafe(48),
    )
    command = [sys.executable, "-m", "shared.cli", "dev", "--port", str(port), "--flower-port", "0"]
    log = (workdir / "dev.log").open("wb")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    raise SystemExit("switchboard dev did not start:\n" + (workdir / "dev.log").read_text())


def take(base_url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import CHROMIUM_ARGS, PASSWORD

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not on PATH (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(base_url + "/")
        page.fill("#auth-email", "ada@example.com")
        page.fill("#auth-password", PASSWORD)
        page.click("#register-button")
        page.locator("#app-view").wait_for(state="visible")
        for text in MESSAGES:
            page.fill("#message-input", text)
            page.press("#message-input", "Enter")
            page.locator(".message[data-role=assistant][data-status=completed] .meta-duration").nth(
                MESSAGES.index(text)
            ).wait_for()
        page.locator(".message-body strong").first.wait_for()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        process = start_dev(Path(workdir), port)
        try:
            take(f"http://127.0.0.1:{port}", args.out)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
