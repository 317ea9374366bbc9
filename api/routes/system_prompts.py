from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import CurrentUser, PageDep, SessionDep
from api.schemas.chats import (
    SystemPromptCreate,
    SystemPromptList,
    SystemPromptRead,
    SystemPromptUpdate,
)
from shared.chats.service import system_prompt_service

router = APIRouter(prefix="/system-prompts", tags=["system-prompts"])


@router.post("", response_model=SystemPromptRead, status_code=status.HTTP_201_CREATED)
def create_system_prompt(
    body: SystemPromptCreate, session: SessionDep, user: CurrentUser
) -> object:
    return system_prompt_service.create(
        session, user, name=body.name, content=body.content, is_default=body.is_default
    )


@router.get("", response_model=SystemPromptList)
def list_system_prompts(session: SessionDep, user: CurrentUser, page: PageDep) -> object:
    rows, count = system_prompt_service.list(session, user, limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count}


@router.get("/{prompt_id}", response_model=SystemPromptRead)
def read_system_prompt(prompt_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> object:
    return system_prompt_service.get(session, user, prompt_id)


@router.patch("/{prompt_id}", response_model=SystemPromptRead)
def update_system_prompt(
    prompt_id: uuid.UUID, body: SystemPromptUpdate, session: SessionDep, user: CurrentUser
) -> object:
    return system_prompt_service.update(
        session, user, prompt_id, body.model_dump(exclude_unset=True)
    )


@router.delete("/{prompt_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_system_prompt(prompt_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> None:
    system_prompt_service.delete(session, user, prompt_id)
