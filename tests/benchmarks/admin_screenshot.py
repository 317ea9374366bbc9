"""The analytics screenshot of the docs (docs/screenshots/analytics.png), taken in Chromium.

    .venv/bin/python -m tests.benchmarks.admin_screenshot
    .venv/bin/python -m tests.benchmarks.admin_screenshot --out /tmp/analytics.png

Recreates SCREENSHOT_DATABASE_URL (default database `switchboard_screenshot_admin` on
127.0.0.1:5432), seeds 40 users and 30 days of usage rows for four providers (made up but
shaped like real traffic: weekday peaks, a few failures, paid and local models), starts one
uvicorn API on loopback (no worker: nothing is queued), logs an admin in on the chat page and
opens /admin#analytics in headless Chromium (`chromium` on PATH) at 1280 px wide. A script,
not a test step, so CI never writes into docs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

DATABASE_URL = os.environ.get(
    "SCREENSHOT_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/switchboard_screenshot_admin",
)
REDIS_URL = os.environ.get("SCREENSHOT_REDIS_URL", "redis://127.0.0.1:6379/13")
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "analytics.png"
PASSWORD = "correct horse battery"
ADMIN_EMAIL = "admin@example.com"
# provider, model, share of the traffic, USD per 1k input/output tokens (None: local, free).
TRAFFIC = [
    ("openai", "gpt-4o-mini", 0.38, (Decimal("0.00015"), Decimal("0.0006"))),
    ("openai", "gpt-4o", 0.12, (Decimal("0.0025"), Decimal("0.01"))),
    ("anthropic", "claude-3-5-sonnet", 0.18, (Decimal("0.003"), Decimal("0.015"))),
    ("ollama", "llama3.1:8b", 0.22, None),
    ("vllm-lab", "meta-llama/Llama-3-8B", 0.10, None),
]


def seed_usage(users: list[uuid.UUID], now: dt.datetime) -> None:
    from sqlalchemy import insert

    from shared.db import session_scope
    from shared.models import ProviderUsage

    rng = random.Random(14)
    rows = []
    for day in range(30):
        date = now - dt.timedelta(days=day)
        weekday = date.weekday() < 5
        volume = int(rng.gauss(260 if weekday else 120, 25)) + day * 2
        for _ in range(volume):
            provider, model, _, price = rng.choices(TRAFFIC, [t[2] for t in TRAFFIC])[0]
            prompt, completion = rng.randint(40, 1600), rng.randint(20, 900)
            local = price is None
            failed = rng.random() < (0.06 if provider == "vllm-lab" else 0.015)
            ttft = rng.lognormvariate(5.2 if local else 5.8, 0.35)
            response = ttft + completion * (8 if local else 14) * rng.uniform(0.7, 1.3)
            cost = (
                Decimal(0) if local else (price[0] * prompt + price[1] * completion) / 1000  # type: ignore[index]
            )
            at = date.replace(hour=rng.randint(7, 22), minute=rng.randint(0, 59))
            rows.append(
                {
                    "user_id": rng.choice(users[: 12 if rng.random() < 0.6 else None]),
                    "provider_name": provider,
                    "model_name": model,
                    "prompt_tokens": prompt,
                    "completion_tokens": 0 if failed else completion,
                    "tokens_used": prompt + (0 if failed else completion),
                    "cost": None if failed else cost.quantize(Decimal("0.000001")),
                    "status": "failed" if failed else "completed",
                    "response_time_ms": int(response),
                    "time_to_first_token_ms": None if failed else int(ttft),
                    "created_at": min(at, now - dt.timedelta(minutes=1)),
                }
            )
    with session_scope() as session:
        session.execute(insert(ProviderUsage), rows)


def seed_users() -> list[uuid.UUID]:
    from shared.db import session_scope
    from shared.models import User
    from shared.security import hash_password

    password_hash = hash_password(PASSWORD)
    names = ["ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "radia"]
    with session_scope() as session:
        admin = User(email=ADMIN_EMAIL, password_hash=password_hash, is_admin=True)
        session.add(admin)
        users = [
            User(
                email=f"{names[n % len(names)]}{n // len(names) or ''}@example.com",
                password_hash=password_hash,
            )
            for n in range(39)
        ]
        session.add_all(users)
        session.flush()
        return [admin.id, *(u.id for u in users)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        parser.error("chromium is not on PATH (apt-get install chromium)")

    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["REDIS_URL"] = REDIS_URL
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import base_env, start_api
    from tests.helpers import recreate_migrated_database

    recreate_migrated_database(DATABASE_URL)
    now = dt.datetime.now(dt.UTC)
    seed_usage(seed_users(), now)
    env = base_env(ENVIRONMENT="test", DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL)
    with tempfile.TemporaryDirectory() as logs:
        api, url = start_api(env, Path(logs))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True)
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                page.goto(url + "/")
                page.fill("#auth-email", ADMIN_EMAIL)
                page.fill("#auth-password", PASSWORD)
                page.click("#login-button")
                page.locator("#app-view").wait_for(state="visible")
                page.goto(url + "/admin#analytics")
                page.locator("html[data-ready='1']").wait_for(state="attached")
                page.locator("#chart-requests canvas").wait_for()
                page.mouse.move(0, 0)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            api.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
