"""Celery tasks: thin wrappers that parse arguments and call the generation runner."""

from __future__ import annotations

import uuid

from celery import Task

from workers.celery_app import GENERATION_TASK, WAKE_TASK, celery_app
from workers.generation import DatabaseUnavailable, run_generation

DB_RETRY_SECONDS = 2
DB_MAX_RETRY_SECONDS = 30


@celery_app.task(name=GENERATION_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def generate_reply(self: Task, reply_id: str, step: int | None = None) -> None:
    try:
        run_generation(uuid.UUID(reply_id), step=step)
    except DatabaseUnavailable as exc:
        # Nothing was claimed, or a finished reply waits in Redis to be stored: try again
        # later, for as long as the outage lasts, rather than drop the user's message.
        countdown = min(DB_RETRY_SECONDS * 2**self.request.retries, DB_MAX_RETRY_SECONDS)
        raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc


@celery_app.task(name=WAKE_TASK, ignore_result=True)
def wake() -> None:
    """Does nothing: its arrival ends the consumer loop's wait (workers.celery_app._wake)."""
