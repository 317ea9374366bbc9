from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.routes.admin.common import AdminDep
from api.schemas.admin_queues import QueueOverviewRead
from shared.admin.queues import queue_overview, reply_counts

router = APIRouter(tags=["admin"])


@router.get("/queues", response_model=QueueOverviewRead)
async def read_queues(auth: AdminDep) -> QueueOverviewRead:
    """Each provider's queue: jobs waiting in the broker (`depth`), and the replies queued and
    running in the database, with Flower's address. 200 with `broker_up: false` and null
    depths when the broker is unreachable."""
    counts = await auth.run(reply_counts)
    # The broker is read after the transaction: a slow Redis must not hold a connection.
    overview = await run_in_threadpool(queue_overview, auth.settings, counts)
    return QueueOverviewRead.model_validate(asdict(overview))
