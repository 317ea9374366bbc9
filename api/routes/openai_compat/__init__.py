"""OpenAI's wire format over Switchboard's queue: `POST /v1/chat/completions`, `GET /v1/models`."""

from api.routes.openai_compat.routes import router

__all__ = ["router"]
