"""Submitting a message: store it and its queued reply, commit, then enqueue the generation."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.chats.service import chat_service
from shared.chats.views import MessageView, message_views
from shared.errors import AppError, BadRequest, Conflict, NotFound, ServiceUnavailable
from shared.models import Chat, Message, ReplyStatus, User
from shared.models.base import utcnow
from shared.providers.directory import current_catalog
from shared.routing.options import RoutingOptions
from shared.routing.plan import RoutePlan, plan_route
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


class IdempotencyKeyReused(Conflict):
    pass


class NotAReply(Conflict):
    pass


def request_fingerprint(
    text: str,
    provider: str | None,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    routing: RoutingOptions | None = None,
    stop: list[str] | None = None,
) -> str:
    """sha256 of the submitted body's fields, compared when an Idempotency-Key comes again.

    ASCII-escaped JSON, so any text (lone surrogates too) encodes, and equal bodies always
    give equal bytes. `routing` and `stop` only count when given, so bodies without them keep
    the fingerprints stored before they existed.
    """
    fields: dict[str, object] = {
        "message": text,
        "provider": provider,
        "model": model,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if routing is not None:
        fields["routing"] = routing.as_json()
    if stop:
        fields["stop"] = stop
    canonical = json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def question_and_reply(
    chat_id: uuid.UUID,
    text: str,
    plan: RoutePlan,
    now: datetime,
    *,
    temperature: float | None,
    max_tokens: int | None,
    stop: list[str] | None = None,
    prompt: list[dict[str, Any]] | None = None,
    idempotency_key: str | None = None,
    request_fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of the user's message and of its queued reply, to the route's first target,
    for one INSERT (`INSERT_MESSAGES`); the reply sorts after the message it answers."""
    target = plan.first
    question = {
        "id": uuid.uuid4(),
        "chat_id": chat_id,
        "role": "user",
        "content": text,
        "created_at": now,
        "updated_at": now,
        "idempotency_key": idempotency_key,
        "request_fingerprint": request_fingerprint,
    }
    reply = {
        "id": uuid.uuid4(),
        "chat_id": chat_id,
        "role": "assistant",
        "content": "",
        "created_at": now + timedelta(microseconds=1),
        "updated_at": now,
        "status": ReplyStatus.queued,
        "provider_name": target.provider,
        "model_name": target.model,
        # Only a route with somewhere to go next, or a reason, is worth a row's bytes.
        "routing": plan.as_json() if len(plan.chain) > 1 or plan.why or plan.cache else None,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "stop": stop or None,
        "reply_to_id": question["id"],
        "prompt": prompt,
        # Set before the send, in the same INSERT: the redelivery sweeper must never see a
        # queued reply without it and take it for one whose job was lost.
        "enqueued_at": now,
    }
    # One INSERT of several rows names one set of columns: each row is NULL in the other's.
    return [dict.fromkeys(reply) | question, dict.fromkeys(question) | reply]


# Built once, run as Core on the session's connection: the ORM's unit of work for two new
# rows and a changed chat cost more CPU than the statements (docs/benchmarks.md).
INSERT_MESSAGES = insert(Message)
TOUCH_CHAT = update(Chat).where(Chat.id == bindparam("chat_id")).values(updated_at=bindparam("now"))


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
        routing: RoutingOptions | None = None,
        stop: list[str] | None = None,
    ) -> Submitted:
        """Commits before enqueueing, so a worker never looks for a row that is not there yet.

        This is the one service that commits: the order commit-then-enqueue is its contract.
        """
        chat = chat_service.get(session, user, chat_id)
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = request_fingerprint(
                text, provider, model, temperature, max_tokens, routing, stop
            )
            previous = self._replay(session, chat_id, idempotency_key, fingerprint, enqueue)
            if previous is not None:
                return previous
        if len(text) > settings.MAX_MESSAGE_CHARS:
            raise BadRequest(f"Message exceeds {settings.MAX_MESSAGE_CHARS} characters")
        chat_options = RoutingOptions.from_json(chat.routing)
        plan = plan_route(
            settings,
            current_catalog(settings),
            provider=provider,
            model=model,
            chat_provider=chat.provider_name,
            chat_model=chat.model_name,
            options=routing.over(chat_options) if routing is not None else chat_options,
        )
        target = plan.first
        now = utcnow()
        question, reply = question_and_reply(
            chat.id,
            text,
            plan,
            now,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )
        try:
            connection = session.connection()
            connection.execute(INSERT_MESSAGES, [question, reply])
            connection.execute(TOUCH_CHAT, {"chat_id": chat.id, "now": now})
            session.commit()
        except IntegrityError:
            session.rollback()
            # The chat was deleted meanwhile (its foreign key failed): 404, as if it were gone
            # before the request.
            chat_service.get(session, user, chat_id)
            if idempotency_key is None or fingerprint is None:
                raise
            # A concurrent retry with the same Idempotency-Key committed first.
            previous = self._replay(session, chat_id, idempotency_key, fingerprint, enqueue)
            if previous is None:
                raise
            return previous

        self.send(session, reply["id"], target.provider, enqueue)
        return Submitted(
            question["id"], reply["id"], ReplyStatus.queued, target.provider, target.model
        )

    def send(self, session: Session, reply_id: uuid.UUID, provider: str, enqueue: Enqueue) -> None:
        """Enqueue a committed, queued reply; if the broker is unreachable, mark it failed
        (a retry with the same Idempotency-Key sends it again) and answer 503."""
        try:
            enqueue(reply_id, provider)
        except Exception as exc:
            log.error("enqueue failed for reply %s: %s", reply_id, type(exc).__name__)
            session.execute(
                update(Message)
                .where(Message.id == reply_id, Message.status == ReplyStatus.queued)
                .values(status=ReplyStatus.failed, error=QUEUE_UNAVAILABLE, completed_at=utcnow())
            )
            session.commit()
            raise QueueUnavailable(QUEUE_UNAVAILABLE, headers={"Retry-After": "5"}) from exc

    def _replay(
        self, session: Session, chat_id: uuid.UUID, key: str, fingerprint: str, enqueue: Enqueue
    ) -> Submitted | None:
        """The submission an Idempotency-Key already made, or None for a new key.

        The same key with a different body is refused: answering with the old reply would
        silently drop the new message. A submission whose enqueue failed is sent again, since
        that is what the documented 503 asks the client to retry.
        """
        user_message = session.scalar(
            select(Message).where(Message.chat_id == chat_id, Message.idempotency_key == key)
        )
        if user_message is None:
            return None
        # Rows stored before fingerprints were recorded have none: nothing to compare with.
        stored_fingerprint = user_message.request_fingerprint
        if stored_fingerprint is not None and stored_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used in this chat with a different request"
            )
        reply = session.scalar(select(Message).where(Message.reply_to_id == user_message.id))
        if reply is None:
            return None
        if reply.status == ReplyStatus.failed and reply.error == QUEUE_UNAVAILABLE:
            self._resend(session, reply, enqueue)
        return Submitted(
            user_message.id,
            reply.id,
            reply.status or "",
            reply.provider_name or "",
            reply.model_name or "",
        )

    def _resend(self, session: Session, reply: Message, enqueue: Enqueue) -> None:
        # Conditional, so of two concurrent retries only one sends the job.
        now = utcnow()
        requeued = session.execute(
            update(Message)
            .where(
                Message.id == reply.id,
                Message.status == ReplyStatus.failed,
                Message.error == QUEUE_UNAVAILABLE,
            )
            .values(
                status=ReplyStatus.queued,
                error=None,
                completed_at=None,
                enqueued_at=now,
                updated_at=now,
            )
        ).rowcount
        session.commit()
        if requeued:
            self.send(session, reply.id, reply.provider_name or "", enqueue)
        session.refresh(reply)

    def get_reply(self, session: Session, user: User, message_id: uuid.UUID) -> Message:
        message = session.get(Message, message_id)
        if message is None:
            raise MessageNotFound("Message not found")
        try:
            chat_service.get(session, user, message.chat_id)  # another user's chat: 404
        except NotFound as exc:
            raise MessageNotFound("Message not found") from exc
        return message

    def get_streamable(self, session: Session, user: User, message_id: uuid.UUID) -> Message:
        """A reply to stream; a user message has no stream (it would wait for events forever)."""
        message = self.get_reply(session, user, message_id)
        if message.role != "assistant":
            raise NotAReply("Only assistant replies stream; this is a user message")
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
