"""Submitting a message: store it and its queued reply, commit, then enqueue the generation."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.chats.selection import resolve_selection
from shared.chats.service import chat_service
from shared.chats.views import MessageView, message_views
from shared.errors import AppError, BadRequest, NotFound, ServiceUnavailable
from shared.models import Message, ReplyStatus, User
from shared.models.base import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)

Enqueue = Callable[[uuid.UUID, str], None]

QUEUE_UNAVAILABLE = "The generation queue is unavailable; the message was stored but not sent"


class QueueUnavailable(ServiceUnavailable):
    pass


class MessageNotFound(NotFound):
    pass


class NotCancellable(AppError):
    status_code = 409


@dataclass(frozen=True, slots=True)
class Submitted:
    message_id: uuid.UUID
    reply_id: uuid.UUID
    status: str
    provider: str
    model: str


class SubmissionService:
    def submit(
        self,
        session: Session,
        user: User,
        settings: Settings,
        chat_id: uuid.UUID,
        *,
        text: str,
        provider: str | None,
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        idempotency_key: str | None,
        enqueue: Enqueue,
    ) -> Submitted:
        """Commits before enqueueing, so a worker never looks for a row that is not there yet.

        This is the one service that commits: the order commit-then-enqueue is its contract.
        """
        chat = chat_service.get(session, user, chat_id)
        if idempotency_key is not None:
            previous = self._find_by_idempotency_key(session, chat_id, idempotency_key)
            if previous is not None:
                return previous
        if len(text) > settings.MAX_MESSAGE_CHARS:
            raise BadRequest(f"Message exceeds {settings.MAX_MESSAGE_CHARS} characters")
        selection = resolve_selection(
            settings,
            provider=provider,
            model=model,
            fallback_provider=chat.provider_name,
            fallback_model=chat.model_name,
        )
        # Ids and times set here so both rows go out in one INSERT; the reply sorts after
        # the message it answers.
        now = utcnow()
        user_message = Message(
            id=uuid.uuid4(),
            chat_id=chat.id,
            role="user",
            content=text,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        reply = Message(
            id=uuid.uuid4(),
            created_at=now + timedelta(microseconds=1),
            updated_at=now,
            chat_id=chat.id,
            role="assistant",
            content="",
            status=ReplyStatus.queued,
            provider_name=selection.provider,
            model_name=selection.model,
            temperature=temperature,
            max_tokens=max_tokens,
            reply_to_id=user_message.id,
        )
        session.add_all([user_message, reply])
        chat.updated_at = now
        try:
            session.commit()
        except IntegrityError:
            # A concurrent retry with the same Idempotency-Key committed first.
            session.rollback()
            previous = self._find_by_idempotency_key(session, chat_id, idempotency_key or "")
            if previous is None:
                raise
            return previous

        try:
            enqueue(reply.id, selection.provider)
        except Exception as exc:
            log.error("enqueue failed for reply %s: %s", reply.id, type(exc).__name__)
            session.execute(
                update(Message)
                .where(Message.id == reply.id, Message.status == ReplyStatus.queued)
                .values(status=ReplyStatus.failed, error=QUEUE_UNAVAILABLE, completed_at=utcnow())
            )
            session.commit()
            raise QueueUnavailable(QUEUE_UNAVAILABLE, headers={"Retry-After": "5"}) from exc
        return Submitted(
            user_message.id, reply.id, ReplyStatus.queued, selection.provider, selection.model
        )

    def _find_by_idempotency_key(
        self, session: Session, chat_id: uuid.UUID, key: str
    ) -> Submitted | None:
        user_message = session.scalar(
            select(Message).where(Message.chat_id == chat_id, Message.idempotency_key == key)
        )
        if user_message is None:
            return None
        reply = session.scalar(select(Message).where(Message.reply_to_id == user_message.id))
        if reply is None:
            return None
        return Submitted(
            user_message.id,
            reply.id,
            reply.status or "",
            reply.provider_name or "",
            reply.model_name or "",
        )

    def get_reply(self, session: Session, user: User, message_id: uuid.UUID) -> Message:
        message = session.get(Message, message_id)
        if message is None:
            raise MessageNotFound("Message not found")
        try:
            chat_service.get(session, user, message.chat_id)  # another user's chat: 404
        except NotFound as exc:
            raise MessageNotFound("Message not found") from exc
        return message

    def reply_view(self, session: Session, user: User, message_id: uuid.UUID) -> MessageView:
        return message_views(session, [self.get_reply(session, user, message_id)])[0]

    def cancel(self, session: Session, user: User, message_id: uuid.UUID) -> MessageView:
        """A queued reply is cancelled here; a running one is stopped by its worker, which
        keeps the partial text and records the usage consumed so far."""
        message = self.get_reply(session, user, message_id)
        if message.role != "assistant":
            raise NotCancellable("Only assistant replies can be cancelled")
        cancelled_here = session.execute(
            update(Message)
            .where(Message.id == message.id, Message.status == ReplyStatus.queued)
            .values(status=ReplyStatus.cancelled, completed_at=utcnow())
        ).rowcount
        session.refresh(message)
        if not cancelled_here and message.status != ReplyStatus.running:
            raise NotCancellable(f"The reply is already {message.status}")
        return message_views(session, [message])[0]


submission_service = SubmissionService()
