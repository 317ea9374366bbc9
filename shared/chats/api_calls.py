"""One call to a compatible API (/v1/chat/completions, /v1/messages): stored as a chat of kind
`api` with the caller's message and a queued reply that carries the whole prompt, committed,
then enqueued, exactly as a native submission is. The reply is generated, streamed, billed and
kept like any other: the formats differ only in how the API reads and writes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session

from shared.chats.submission import (
    INSERT_MESSAGES,
    Enqueue,
    Submitted,
    question_and_reply,
    submission_service,
)
from shared.errors import AppError, BadRequest
from shared.models import Chat, ReplyStatus, User
from shared.models.base import utcnow
from shared.providers.base import Message as ProviderMessage
from shared.providers.directory import current_catalog
from shared.providers.snapshot import Catalog
from shared.routing.plan import is_virtual, plan_route
from shared.settings import Settings

TITLE_CHARS = 80
INSERT_CHAT = insert(Chat)


class ModelNotFound(AppError):
    """The compatible APIs answer 404 `model_not_found` for it, as OpenAI does."""

    status_code = 404


@dataclass(frozen=True, slots=True)
class ApiCall:
    model: str  # "provider/model", a model name unique across providers, or a virtual model
    messages: list[ProviderMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None


def resolve_model(catalog: Catalog, spec: str) -> tuple[str | None, str]:
    """(provider, model) for a compatible API's `model`; provider None for a virtual model.

    `provider/model` wins when the part before the first slash is a provider that offers the
    rest (model names may hold slashes: `vllm/meta-llama/Llama-3-8B`); else a bare name must
    be offered by exactly one enabled provider.
    """
    if is_virtual(spec):
        return None, spec
    provider, _, model = spec.partition("/")
    config = catalog.configs.get(provider)
    if model and config is not None and config.enabled and model in config.models:
        return provider, model
    offering = sorted(name for name, c in catalog.configs.items() if c.enabled and spec in c.models)
    if len(offering) == 1:
        return offering[0], spec
    if len(offering) > 1:
        raise ModelNotFound(
            f"The model '{spec}' is offered by several providers ({', '.join(offering)}): "
            f"name one, as 'provider/{spec}'"
        )
    raise ModelNotFound(f"The model '{spec}' does not exist or you do not have access to it")


def model_ids(catalog: Catalog) -> list[tuple[str, str]]:
    """Every (id, owner) a caller may use: `provider/model` for each enabled model."""
    return [
        (f"{name}/{model}", name)
        for name, config in sorted(catalog.configs.items())
        if config.enabled
        for model in config.models
    ]


class ApiCallService:
    def submit(
        self, session: Session, user: User, settings: Settings, call: ApiCall, enqueue: Enqueue
    ) -> Submitted:
        if not call.messages or call.messages[-1].role != "user":
            raise BadRequest("The last message must be the user's")
        if sum(len(m.content) for m in call.messages) > settings.MAX_MESSAGE_CHARS:
            raise BadRequest(f"The messages exceed {settings.MAX_MESSAGE_CHARS} characters")
        catalog = current_catalog(settings)
        provider, model = resolve_model(catalog, call.model)
        plan = plan_route(
            settings,
            catalog,
            provider=provider,
            model=model,
            chat_provider=None,
            chat_model=None,
            options=None,
        )
        target = plan.first
        question = call.messages[-1].content
        now = utcnow()
        chat = {
            "id": uuid.uuid4(),
            "user_id": user.id,
            "kind": "api",
            "title": question.split("\n")[0][:TITLE_CHARS] or "API call",
            "provider_name": target.provider,
            "model_name": target.model,
            "created_at": now,
            "updated_at": now,
        }
        asked, reply = question_and_reply(
            chat["id"],
            question,
            plan,
            now,
            temperature=call.temperature,
            max_tokens=call.max_tokens,
            stop=call.stop,
            prompt=[m.model_dump() for m in call.messages],
        )
        connection = session.connection()
        connection.execute(INSERT_CHAT, chat)  # first: the messages' foreign key names it
        connection.execute(INSERT_MESSAGES, [asked, reply])
        session.commit()
        submission_service.send(session, reply["id"], target.provider, enqueue)
        return Submitted(
            asked["id"], reply["id"], ReplyStatus.queued, target.provider, target.model
        )


api_call_service = ApiCallService()
