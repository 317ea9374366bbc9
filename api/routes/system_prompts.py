from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import AuthDep, PageDep
from api.schemas.chats import (
    SystemPromptCreate,
    SystemPromptList,
    SystemPromptRead,
    SystemPromptUpdate,
)
from api.schemas.responses import AUTHENTICATED, BODY_ERRORS, not_found
from shared.chats.service import system_prompt_service

router = APIRouter(prefix="/system-prompts", tags=["system-prompts"], responses=AUTHENTICATED)

PROMPT_NOT_FOUND = not_found("system prompt")


@router.post(
    "", response_model=SystemPromptRead, status_code=status.HTTP_201_CREATED, responses=BODY_ERRORS
)
async def create_system_prompt(body: SystemPromptCreate, auth: AuthDep) -> object:
    return await auth.run(
        system_prompt_service.create,
        name=body.name,
        content=body.content,
        is_default=body.is_default,
    )


@router.get("", response_model=SystemPromptList)
async def list_system_prompts(auth: AuthDep, page: PageDep) -> object:
    rows, count = await auth.run(system_prompt_service.list, limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count}


@router.get("/{prompt_id}", response_model=SystemPromptRead, responses=PROMPT_NOT_FOUND)
async def read_system_prompt(prompt_id: uuid.UUID, auth: AuthDep) -> object:
    return await auth.run(system_prompt_service.get, prompt_id)


@router.patch(
    "/{prompt_id}", response_model=SystemPromptRead, responses=BODY_ERRORS | PROMPT_NOT_FOUND
)
async def update_system_prompt(
    prompt_id: uuid.UUID, body: SystemPromptUpdate, auth: AuthDep
) -> object:
    return await auth.run(
        system_prompt_service.update, prompt_id, body.model_dump(exclude_unset=True)
    )


@router.delete("/{prompt_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PROMPT_NOT_FOUND)
async def delete_system_prompt(prompt_id: uuid.UUID, auth: AuthDep) -> None:
    await auth.run(system_prompt_service.delete, prompt_id)
