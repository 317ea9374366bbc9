"""The ASGI app: `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.errors import install_error_handlers
from api.limits import BodySizeLimitMiddleware
from api.routes import (
    admin,
    anthropic_compat,
    auth,
    chats,
    health,
    messages,
    metrics,
    openai_compat,
    providers,
    system_prompts,
    users,
)
from api.routes.metrics import install_metrics
from api.schemas.common import ErrorOut
from api.web import install_web
from shared.providers.directory import provider_directory
from shared.redis_client import async_redis
from shared.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # Every route checks tokens signed with this key: without one the API must not start
    # (MissingSecretKey names the setting and how to make one).
    settings.secret_key  # noqa: B018
    # One database unit of work per thread: never more threads than pooled connections.
    to_thread.current_default_thread_limiter().total_tokens = (
        settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW
    )
    # Clients are built here, never at import time.
    app.state.redis = async_redis(settings.REDIS_URL)
    # The provider tables: synced with the settings, read, and watched for admins' changes.
    await to_thread.run_sync(provider_directory.start, settings)
    try:
        yield
    finally:
        await to_thread.run_sync(provider_directory.stop)
        await app.state.redis.aclose()


def _route_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="Switchboard",
        summary="Queue-backed multi-provider LLM chat backend",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=_route_id,
        responses={422: {"model": ErrorOut}},
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    install_error_handlers(app)
    install_web(app)
    # Outermost: it counts the answers of the error middleware too.
    install_metrics(app)
    for module in (
        health,
        auth,
        users,
        chats,
        messages,
        system_prompts,
        providers,
        metrics,
        admin,
        openai_compat,
        anthropic_compat,
    ):
        app.include_router(module.router)
    return app


app = create_app()
