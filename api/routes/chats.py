from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import CurrentUser, PageDep, SessionDep, SettingsDep
from api.schemas.chats import ChatCreate, ChatList, ChatRead, ChatUpdate
from api.schemas.messages import MessageList
from shared.chats.service import chat_service
from shared.chats.views import message_views

router = APIRouter(prefix="/chats", tags=["chats"])


@router.post("", response_model=ChatRead, status_code=status.HTTP_201_CREATED)
def create_chat(
    body: ChatCreate, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> object:
    return chat_service.create(
        session,
        settings,
        user,
        title=body.title,
        provider=body.provider,
        model=body.model,
        system_prompt_id=body.system_prompt_id,
    )


@router.get("", response_model=ChatList)
def list_chats(session: SessionDep, user: CurrentUser, page: PageDep) -> object:
    rows, count = chat_service.list(session, user, limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count}


@router.get("/{chat_id}", response_model=ChatRead)
def read_chat(chat_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> object:
    return chat_service.get(session, user, chat_id)


@router.patch("/{chat_id}", response_model=ChatRead)
def update_chat(
    chat_id: uuid.UUID,
    body: ChatUpdate,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> object:
    return chat_service.update(
        session, settings, user, chat_id, body.model_dump(exclude_unset=True)
    )


@router.delete("/{chat_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_chat(chat_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> None:
    chat_service.delete(session, user, chat_id)


@router.get("/{chat_id}/messages", response_model=MessageList)
def list_messages(
    chat_id: uuid.UUID, session: SessionDep, user: CurrentUser, page: PageDep
) -> object:
    rows, count = chat_service.list_messages(
        session, user, chat_id, limit=page.limit, offset=page.offset
    )
    return {"data": message_views(session, rows), "count": count}
