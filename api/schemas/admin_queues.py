from __future__ import annotations

from pydantic import BaseModel, Field


class QueueRead(BaseModel):
    provider: str
    queue: str = Field(description="The broker queue the provider's jobs go to")
    depth: int | None = Field(
        description="Jobs waiting in the broker queue, not yet taken by a worker; null when "
        "the broker did not answer"
    )
    queued: int = Field(description="Replies to this provider the database holds as queued")
    running: int = Field(description="Replies to this provider being generated now")


class QueueOverviewRead(BaseModel):
    flower_url: str = Field(description="Flower, the Celery monitor (setting FLOWER_URL)")
    broker_up: bool = Field(description="False when the broker did not answer (depths null)")
    data: list[QueueRead]
