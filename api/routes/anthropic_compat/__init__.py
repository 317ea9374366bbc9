"""Anthropic's Messages API (`POST /v1/messages`) over the same queue, worker and storage as
the native API, for clients built on the anthropic SDK."""

from api.routes.anthropic_compat.routes import router

__all__ = ["router"]
