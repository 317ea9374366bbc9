"""Every error leaves the API as JSON with FastAPI's `detail` key, on a connection that stays open.

Why unexpected errors are not an `Exception` handler: Starlette runs a handler registered for
`Exception` (or 500) in its outermost ServerErrorMiddleware, which sends the handler's response
and then re-raises; uvicorn then sees an exception after the response started and closes the
keep-alive connection, so the client's next request on it fails with ECONNRESET. Here the known
errors are handled in ExceptionMiddleware (as every non-500 handler is), and anything else is
caught by `UnexpectedErrorMiddleware`, which answers a JSON 500 and does not re-raise.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import BodyTooLarge, payload_too_large_body, send_json_response
from shared.db import DatabaseUnavailable, is_database_unavailable
from shared.errors import AppError

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = "2"
REDIS_RETRY_AFTER_SECONDS = "2"


def _public_validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    # Drop `input`: echoing what was sent would echo passwords and keys back.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in errors
    ]


def _internal_error_body() -> dict[str, str]:
    return {"error": "InternalError", "detail": "Internal server error"}


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        {"error": type(exc).__name__, "detail": exc.message},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"error": "ValidationError", "detail": _public_validation_errors(list(exc.errors()))},
        status_code=422,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"error": "HTTPError", "detail": exc.detail},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _body_too_large(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return JSONResponse(payload_too_large_body(exc.max_bytes), status_code=413)


async def _pool_exhausted(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database pool exhausted: %s", type(exc).__name__)
    return JSONResponse(
        {"error": "ServiceBusy", "detail": "The service is busy; retry shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, DatabaseUnavailable) and not is_database_unavailable(exc):
        # A constraint or SQL error is a bug, not an outage: a 500, but still on this handler's
        # level, so the connection stays open.
        log.error("database error", exc_info=exc)
        return JSONResponse(_internal_error_body(), status_code=500)
    # The type only: a driver message can carry the server's address or the user name.
    log.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {"error": "DatabaseUnavailable", "detail": "The database is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": DATABASE_RETRY_AFTER_SECONDS},
    )


async def _redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {
            "error": "StreamingUnavailable",
            "detail": "The token channel is unavailable; retry shortly",
        },
        status_code=503,
        headers={"Retry-After": REDIS_RETRY_AFTER_SECONDS},
    )


class UnexpectedErrorMiddleware:
    """The last resort: an error no handler knows becomes a JSON 500 on a connection that stays
    open. When the response had already started (a stream), its body is ended cleanly instead of
    being cut, so the connection stays usable and the client sees a complete (if short) body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            if not started:
                await send_json_response(send, 500, _internal_error_body())
            elif not completed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeoutError, _pool_exhausted)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(DatabaseUnavailable, _database_error)
    app.add_exception_handler(redis.ConnectionError, _redis_unavailable)
    app.add_exception_handler(redis.TimeoutError, _redis_unavailable)
    # Added last, so it wraps every user middleware (the body limit too).
    app.add_middleware(UnexpectedErrorMiddleware)
