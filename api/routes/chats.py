from __future__ import annotations

import logging
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from redis.exceptions import RedisError

from api.deps import AuthDep, PageDep
from api.schemas.chats import ChatCreate, ChatList, ChatRead, ChatUpdate
from api.schemas.messages import MessageList
from api.schemas.responses import AUTHENTICATED, BODY_ERRORS, not_found
from shared.channel import end_deleted_replies
from shared.chats.service import chat_service

log = logging.getLogger(__name__)

router = APIRouter(prefix="/chats", tags=["chats"], responses=AUTHENTICATED)

CHAT_NOT_FOUND = not_found("chat")
# A system_prompt_id that is not the caller's prompt.
PROMPT_NOT_FOUND = not_found("system prompt")


@router.post(
    "",
    response_model=ChatRead,
    status_code=status.HTTP_201_CREATED,
    responses=BODY_ERRORS | PROMPT_NOT_FOUND,
)
async def create_chat(body: ChatCreate, auth: AuthDep) -> object:
    return await auth.run(
        chat_service.create,
        auth.settings,
        title=body.title,
        provider=body.provider,
        model=body.model,
        system_prompt_id=body.system_prompt_id,
        routing=body.routing,
    )


@router.get("", response_model=ChatList)
async def list_chats(
    auth: AuthDep,
    page: PageDep,
    kind: Annotated[
        Literal["chat", "api", "all"],
        Query(description="`chat` (the default), `api` (compatible-API calls) or `all`"),
    ] = "chat",
) -> object:
    rows, count = await auth.run(chat_service.list, limit=page.limit, offset=page.offset, kind=kind)
    return {"data": rows, "count": count}


@router.get("/{chat_id}", response_model=ChatRead, responses=CHAT_NOT_FOUND)
async def read_chat(chat_id: uuid.UUID, auth: AuthDep) -> object:
    return await auth.run(chat_service.get, chat_id)


@router.patch(
    "/{chat_id}",
    response_model=ChatRead,
    responses=BODY_ERRORS | not_found("chat, or system prompt named by system_prompt_id"),
)
async def update_chat(chat_id: uuid.UUID, body: ChatUpdate, auth: AuthDep) -> object:
    return await auth.run(
        chat_service.update, auth.settings, chat_id, body.model_dump(exclude_unset=True)
    )


@router.delete("/{chat_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CHAT_NOT_FOUND)
async def delete_chat(chat_id: uuid.UUID, request: Request, auth: AuthDep) -> None:
    unfinished = await auth.run(chat_service.delete, chat_id)
    try:
        await end_deleted_replies(
            request.app.state.redis, unfinished, auth.settings.TOKEN_STREAM_TTL_SECONDS
        )
    except RedisError as exc:
        # The delete has committed; open streams end from the database instead, and a
        # running reply's worker finds its row gone when it stores the outcome.
        log.warning("could not stop the replies of deleted chat %s: %s", chat_id, exc)


@router.get("/{chat_id}/messages", response_model=MessageList, responses=CHAT_NOT_FOUND)
async def list_messages(chat_id: uuid.UUID, auth: AuthDep, page: PageDep) -> object:
    views, count = await auth.run(
        chat_service.list_message_views, chat_id, limit=page.limit, offset=page.offset
    )
    return {"data": views, "count": count}
