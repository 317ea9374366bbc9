"""Celery tasks: thin wrappers that parse arguments and call the generation runner."""

from __future__ import annotations

import uuid

from celery import Task

from workers.celery_app import GENERATION_TASK, celery_app
from workers.generation import DatabaseUnavailable, run_generation

DB_RETRY_SECONDS = 2
DB_MAX_RETRIES = 30


@celery_app.task(name=GENERATION_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def generate_reply(self: Task, reply_id: str) -> None:
    try:
        run_generation(uuid.UUID(reply_id))
    except DatabaseUnavailable as exc:
        # Nothing was claimed: try again later rather than drop the user's message.
        raise self.retry(exc=exc, countdown=DB_RETRY_SECONDS, max_retries=DB_MAX_RETRIES) from exc
