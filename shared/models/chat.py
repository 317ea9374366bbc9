from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, JSONType, Timestamps, UUIDPrimaryKey


class SystemPrompt(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "system_prompts"
    __table_args__ = (
        # At most one default per user, so the prompt a claim picks is never arbitrary.
        Index(
            "uq_system_prompts_one_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Chat(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "chats"
    __table_args__ = (Index("ix_chats_user_created", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    provider_name: Mapped[str | None] = mapped_column(
        String(50), default="ollama", server_default="ollama"
    )
    model_name: Mapped[str | None] = mapped_column(String(100))
    system_prompt_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("system_prompts.id", ondelete="SET NULL")
    )
    # The chat's own routing options (shared.routing.options.RoutingOptions as JSON).
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # `chat`: made in the chat app or the native API; `api`: one call to a compatible API
    # (/v1/chat/completions, /v1/messages), hidden from the chat list unless asked for.
    kind: Mapped[str] = mapped_column(String(20), default="chat", server_default="chat")
    # The A/B experiment this chat was assigned to when it was created, and its arm.
    experiment_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("experiments.id", ondelete="SET NULL")
    )
    experiment_arm: Mapped[str | None] = mapped_column(String(10))


class ReplyStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (ReplyStatus.completed, ReplyStatus.failed, ReplyStatus.cancelled)


class Message(UUIDPrimaryKey, Timestamps, Base):
    """A user message, or an assistant reply with its generation state."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_chat_created", "chat_id", "created_at"),
        # The redelivery sweeper's scan, and the idempotent replay's lookup of a reply.
        Index("ix_messages_status_provider", "status", "provider_name"),
        Index("ix_messages_reply_to_id", "reply_to_id"),
        UniqueConstraint("chat_id", "idempotency_key", name="uq_messages_chat_idempotency"),
    )

    chat_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text, default="")
    # Generation state, set on assistant replies only.
    status: Mapped[str | None] = mapped_column(String(20))
    provider_name: Mapped[str | None] = mapped_column(String(50))
    model_name: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    reply_to_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="SET NULL")
    )
    temperature: Mapped[float | None] = mapped_column(Float)
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the generation job was last sent to the broker: the sweeper re-sends a job only
    # when this is older than the visibility timeout, so a backlog is never re-enqueued.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finish_reason: Mapped[str | None] = mapped_column(String(50))
    # sha256 of a user message's submitted body: the same Idempotency-Key with another body
    # is a client bug, answered 409 instead of the old reply.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Replies: the route resolved at submit (shared.routing.plan.RoutePlan as JSON), and
    # which of its targets runs now; provider_name/model_name always name that target.
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    route_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Replies to a compatible-API call: the conversation exactly as the call sent it, which
    # the worker sends as it is (such a chat has no history of its own).
    prompt: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # Replies: the stop sequences the provider is asked to end the reply at.
    stop: Mapped[list[str] | None] = mapped_column(JSONType)
    # A user's thumbs up (1) or down (-1) on a reply.
    rating: Mapped[int | None] = mapped_column(SmallInteger)
