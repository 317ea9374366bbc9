"""Reject oversized request bodies before anything parses them."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a declared length grows past the limit.

    An HTTPException on purpose: FastAPI turns any other exception raised while it reads the
    body into "400 There was an error parsing the body", and re-raises only HTTPExceptions,
    so this reaches the 413 handler (api/errors.py).
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_detail(max_bytes))
        self.max_bytes = max_bytes


def _detail(max_bytes: int) -> str:
    return f"Request body exceeds {max_bytes} bytes"


def payload_too_large_body(max_bytes: int) -> dict[str, str]:
    return {"error": "PayloadTooLarge", "detail": _detail(max_bytes)}


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return

        received = 0

        async def counting_receive() -> Message:
            # Chunked bodies declare no length: count what actually arrives.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Read outside a route (no exception handler on the way): answer here.
            if not response_started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_json_response(send, 413, payload_too_large_body(self.max_bytes))


async def send_json_response(send: Send, status: int, payload: dict[str, str]) -> None:
    """A whole JSON response at the ASGI level, where no Response object is in reach."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
