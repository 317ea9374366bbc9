"""More simultaneous requests than pooled connections queue up; they never deadlock or 500."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Message
from tests.e2e.harness import start_api, wait_until
from tests.helpers import register_and_login


def test_requests_beyond_the_pool_size_all_succeed(service_env, log_dir, db_clean, worker):
    tiny_pool = service_env | {
        "DATABASE_POOL_SIZE": "2",
        "DATABASE_MAX_OVERFLOW": "1",
        "DATABASE_POOL_TIMEOUT_SECONDS": "5",
    }
    process, url = start_api(tiny_pool, log_dir)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            headers = register_and_login(client)
            chat = client.post("/chats", json={}, headers=headers).json()

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                calls = []
                for index in range(150):
                    if index % 3 == 0:
                        calls.append(
                            client.post(
                                f"/chats/{chat['id']}/messages",
                                json={"message": f"m{index}"},
                                headers=headers,
                            )
                        )
                    elif index % 3 == 1:
                        calls.append(client.get("/users/me", headers=headers))
                    else:
                        calls.append(client.post("/chats", json={}, headers=headers))
                return [r.status_code for r in await asyncio.gather(*calls)]

        statuses = asyncio.run(burst())
    finally:
        process.stop()
    assert sorted(set(statuses)) == [200, 201, 202], statuses

    def all_replied() -> bool:
        with session_scope() as session:
            done = session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.role == "assistant", Message.status == "completed")
            )
        return done == 50

    wait_until(all_replied, 60, interval=0.2)
