"""Chats and system prompts. Every lookup is scoped to its owner: another user's id is a 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, null, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from shared.chats.selection import Selection, resolve_selection
from shared.chats.views import MessageView, message_views
from shared.errors import NotFound
from shared.models import Chat, Message, ReplyStatus, SystemPrompt, User
from shared.providers.directory import current_catalog
from shared.routing.experiments import assign
from shared.routing.options import RoutingOptions
from shared.routing.plan import check_virtual, is_virtual, user_fallbacks
from shared.routing.targets import Target
from shared.settings import Settings

T = TypeVar("T")


def paginate(
    session: Session,
    model: type[T],
    where: ColumnElement[bool],
    order_by: tuple[Any, ...],
    *,
    limit: int,
    offset: int,
) -> tuple[list[T], int]:
    """One page of `model` rows matching `where`, and how many match in all."""
    count = session.scalar(select(func.count()).select_from(model).where(where))
    rows = session.scalars(
        select(model).where(where).order_by(*order_by).limit(limit).offset(offset)
    )
    return list(rows), count or 0


class ChatNotFound(NotFound):
    pass


class SystemPromptNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class ChatSelection:
    provider: str | None  # None with a virtual model: the route picks one per message
    model: str


def chat_selection(
    settings: Settings,
    *,
    provider: str | None,
    model: str | None,
    fallback_provider: str | None = None,
) -> Selection | ChatSelection:
    """A chat's model may be virtual (`pool:<name>`, `auto:cheapest`), checked here."""
    if model is not None and is_virtual(model):
        check_virtual(current_catalog(settings), model)
        return ChatSelection(None, model)
    return resolve_selection(
        settings, provider=provider, model=model, fallback_provider=fallback_provider
    )


class ChatService:
    def create(
        self,
        session: Session,
        user: User,
        settings: Settings,
        *,
        title: str | None,
        provider: str | None,
        model: str | None,
        system_prompt_id: uuid.UUID | None,
        routing: RoutingOptions | None = None,
    ) -> Chat:
        selection = chat_selection(settings, provider=provider, model=model)
        user_fallbacks(current_catalog(settings), routing)  # refused now, not at each message
        if system_prompt_id is not None:
            system_prompt_service.get(session, user, system_prompt_id)
        chat = Chat(
            id=uuid.uuid4(),
            user_id=user.id,
            title=title or "New chat",
            # null(), not None: None would let the column's default provider in.
            provider_name=selection.provider if selection.provider is not None else null(),
            model_name=selection.model,
            system_prompt_id=system_prompt_id,
            routing=routing.as_json() if routing is not None else None,
        )
        # A/B split: a new chat bound for an experiment's control may join its variant, and
        # stays in its arm (its provider and model are the arm's).
        if selection.provider is not None:
            tables = current_catalog(settings).routing
            joined = assign(tables, Target(selection.provider, selection.model), chat.id)
            if joined is not None:
                chat.provider_name, chat.model_name = joined.target.provider, joined.target.model
                chat.experiment_id, chat.experiment_arm = joined.experiment.id, joined.arm
        session.add(chat)
        session.flush()
        return chat

    def get(self, session: Session, user: User, chat_id: uuid.UUID) -> Chat:
        chat = session.get(Chat, chat_id)
        if chat is None or chat.user_id != user.id:
            raise ChatNotFound("Chat not found")
        return chat

    def list(
        self, session: Session, user: User, *, limit: int, offset: int, kind: str = "chat"
    ) -> tuple[list[Chat], int]:
        """Most recent activity first: a chat's `updated_at` moves on each message sent to it
        (and on a rename or a provider change), as a chat app's list is ordered. `kind`:
        `chat` (the default: what the chat app shows), `api` (compatible-API calls) or `all`."""
        where = Chat.user_id == user.id
        if kind != "all":
            where = where & (Chat.kind == kind)
        return paginate(
            session,
            Chat,
            where,
            (Chat.updated_at.desc(), Chat.id.desc()),
            limit=limit,
            offset=offset,
        )

    def update(
        self,
        session: Session,
        user: User,
        settings: Settings,
        chat_id: uuid.UUID,
        changes: dict[str, Any],
    ) -> Chat:
        chat = self.get(session, user, chat_id)
        if "provider" in changes or "model" in changes:
            selection = chat_selection(
                settings,
                provider=changes.get("provider"),
                model=changes.get("model"),
                fallback_provider=chat.provider_name,
            )
            chat.provider_name, chat.model_name = selection.provider, selection.model
        if "routing" in changes:
            raw = changes["routing"]  # a dict: the route dumped the request body
            options = RoutingOptions.model_validate(raw) if raw is not None else None
            user_fallbacks(current_catalog(settings), options)
            chat.routing = options.as_json() if options is not None else None
        if "title" in changes and changes["title"] is not None:
            chat.title = changes["title"]
        if "system_prompt_id" in changes:
            prompt_id = changes["system_prompt_id"]
            if prompt_id is not None:
                system_prompt_service.get(session, user, prompt_id)
            chat.system_prompt_id = prompt_id
        session.flush()
        return chat

    def delete(
        self, session: Session, user: User, chat_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, str]]:
        """Deletes the chat and its messages; usage rows stay (the billing record).

        Returns the (id, status) of its unfinished replies, which the caller stops."""
        chat = self.get(session, user, chat_id)
        unfinished = session.execute(
            select(Message.id, Message.status).where(
                Message.chat_id == chat.id,
                Message.status.in_([ReplyStatus.queued, ReplyStatus.running]),
            )
        ).all()
        session.delete(chat)
        session.flush()
        return [(row.id, row.status) for row in unfinished]

    def list_messages(
        self, session: Session, user: User, chat_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[list[Message], int]:
        self.get(session, user, chat_id)
        return paginate(
            session,
            Message,
            Message.chat_id == chat_id,
            (Message.created_at, Message.id),
            limit=limit,
            offset=offset,
        )

    def list_message_views(
        self, session: Session, user: User, chat_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[list[MessageView], int]:
        rows, count = self.list_messages(session, user, chat_id, limit=limit, offset=offset)
        return message_views(session, rows), count


class SystemPromptService:
    def create(
        self, session: Session, user: User, *, name: str, content: str, is_default: bool
    ) -> SystemPrompt:
        if is_default:
            self._clear_default(session, user)
        prompt = SystemPrompt(user_id=user.id, name=name, content=content, is_default=is_default)
        session.add(prompt)
        session.flush()
        return prompt

    def get(self, session: Session, user: User, prompt_id: uuid.UUID) -> SystemPrompt:
        prompt = session.get(SystemPrompt, prompt_id)
        if prompt is None or prompt.user_id != user.id:
            raise SystemPromptNotFound("System prompt not found")
        return prompt

    def list(
        self, session: Session, user: User, *, limit: int, offset: int
    ) -> tuple[list[SystemPrompt], int]:
        where = SystemPrompt.user_id == user.id
        return paginate(
            session,
            SystemPrompt,
            where,
            (SystemPrompt.created_at.desc(),),
            limit=limit,
            offset=offset,
        )

    def update(
        self, session: Session, user: User, prompt_id: uuid.UUID, changes: dict[str, Any]
    ) -> SystemPrompt:
        prompt = self.get(session, user, prompt_id)
        if changes.get("is_default"):
            self._clear_default(session, user)
        for field in ("name", "content", "is_default"):
            if changes.get(field) is not None:
                setattr(prompt, field, changes[field])
        session.flush()
        return prompt

    def delete(self, session: Session, user: User, prompt_id: uuid.UUID) -> None:
        session.delete(self.get(session, user, prompt_id))
        session.flush()

    def _clear_default(self, session: Session, user: User) -> None:
        # Locking the owner's row serialises concurrent "make this the default" requests,
        # which the one-default-per-user index would otherwise turn into an IntegrityError.
        session.execute(select(User.id).where(User.id == user.id).with_for_update())
        session.execute(
            update(SystemPrompt)
            .where(SystemPrompt.user_id == user.id, SystemPrompt.is_default)
            .values(is_default=False)
        )


chat_service = ChatService()
system_prompt_service = SystemPromptService()
