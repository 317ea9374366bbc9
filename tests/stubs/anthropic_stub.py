"""Anthropic Messages wire protocol: named SSE events message_start, content_block_start, ping,
content_block_delta (text_delta), content_block_stop, message_delta, message_stop, and `error`.

Validates what the real API validates and our adapter must get right: `max_tokens` required,
no "system" role inside `messages`, a key (`x-api-key` or bearer) and `anthropic-version`.
Run: python -m tests.stubs.anthropic_stub --port N
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.stubs._faults import (
    MIDSTREAM_FAULTS,
    RATE_LIMIT_REQUESTS,
    RATE_LIMIT_TOKENS,
    Plan,
    count_before_stop,
    is_known,
    last_user_text,
    plan_for,
    reply_pieces,
    stop_sequences,
)
from tests.stubs._server import CUT, Request, Response, StreamResponse, StubServer, cli

MODELS = (
    "claude-3-opus-20240229",
    "claude-3-sonnet-20240229",
    "claude-3-haiku-20240307",
    "stub-model",
)


def _error(status: int, type_: str, message: str, **headers: str) -> Response:
    return Response.json(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_stub"},
        status,
        **headers,
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _rate_limit_headers(plan: Plan, prompt_tokens: int) -> dict[str, str]:
    """Anthropic's anthropic-ratelimit-* headers, only when the model name has `+remaining=N`.

    Resets are RFC 3339 times to the second, as Anthropic sends them: the next whole second
    at most 1 s ahead.
    """
    if plan.remaining_requests is None:
        return {}
    reset = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "anthropic-ratelimit-requests-limit": str(RATE_LIMIT_REQUESTS),
        "anthropic-ratelimit-requests-remaining": str(plan.remaining_requests),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": str(RATE_LIMIT_TOKENS),
        "anthropic-ratelimit-tokens-remaining": str(RATE_LIMIT_TOKENS - prompt_tokens),
        "anthropic-ratelimit-tokens-reset": reset,
    }


class AnthropicStub(StubServer):
    name = "anthropic"

    def __init__(self, *args: Any, models: tuple[str, ...] = MODELS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = models

    async def handle(self, request: Request) -> Response | StreamResponse:
        # anthropic 2.x sends the key as `Authorization: Bearer`; older clients as x-api-key.
        if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if request.method == "GET" and request.path == "/v1/models":
            return Response.json(
                {
                    "data": [
                        {
                            "type": "model",
                            "id": m,
                            "display_name": m,
                            "created_at": "2024-02-29T00:00:00Z",
                        }
                        for m in self.models
                    ],
                    "has_more": False,
                    "first_id": self.models[0],
                    "last_id": self.models[-1],
                }
            )
        if request.method == "POST" and request.path == "/v1/messages":
            return await self._messages(request)
        return _error(404, "not_found_error", "Not found")

    async def _messages(self, request: Request) -> Response | StreamResponse:
        body = request.json()
        plan = plan_for(str(body.get("model", "")), self.tokens, self.token_delay_ms)
        if plan.fault == "401":
            return _error(401, "authentication_error", "invalid x-api-key")
        if "max_tokens" not in body:
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        messages = body.get("messages") or []
        for message in messages:
            if message.get("role") not in ("user", "assistant"):
                return _error(
                    400,
                    "invalid_request_error",
                    f'messages: Unexpected role "{message.get("role")}". The '
                    "Messages API accepts a top-level `system` parameter, not "
                    '"system" as an input message role.',
                )
        if not is_known(plan, self.models):
            return _error(404, "not_found_error", f"model: {plan.model}")
        early = await self._early_fault(plan, messages)
        if early is not None:
            return early
        prompt_tokens = plan.prompt_count(body.get("system"), *(m.get("content") for m in messages))
        count, stop = plan.tokens, "end_turn"
        if int(body["max_tokens"]) < count:
            count, stop = int(body["max_tokens"]), "max_tokens"
        count, matched = count_before_stop(count, stop_sequences(body.get("stop_sequences")))
        if matched is not None:
            stop = "stop_sequence"
        limits = _rate_limit_headers(plan, prompt_tokens)
        if not body.get("stream"):
            return Response.json(
                {
                    "id": "msg_stub",
                    "type": "message",
                    "role": "assistant",
                    "model": plan.model,
                    "content": [{"type": "text", "text": "".join(reply_pieces(count))}],
                    "stop_reason": stop,
                    "stop_sequence": matched,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": count},
                },
                **limits,
            )
        return StreamResponse(
            self._events(plan, prompt_tokens, count, stop, matched),
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **limits,
            },
        )

    async def _early_fault(self, plan: Plan, messages: list[dict[str, Any]]) -> Response | None:
        fault = plan.fault
        if fault == "403":
            return _error(
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            )
        if fault == "429" or (
            fault == "429-then-ok" and self.first_attempt(plan.model, last_user_text(messages))
        ):
            return _error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
                retry_after="1",
            )
        if fault == "quota":
            return _error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to "
                "access the Anthropic API. Please go to Plans & Billing to upgrade "
                "or purchase credits.",
            )
        if fault == "billing":
            return _error(402, "billing_error", "Your workspace has reached its spend limit.")
        if fault == "500":
            return _error(500, "api_error", "Internal server error")
        if fault in ("overloaded", "529"):
            return _error(529, "overloaded_error", "Overloaded")
        if fault == "context":
            return _error(
                400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
            )
        if fault == "bad-request":
            return _error(400, "invalid_request_error", "temperature: range: 0..1")
        if fault == "redirect":
            return self.redirect()
        if fault == "hang":
            await self.hang()
        return None

    async def _events(
        self, plan: Plan, prompt_tokens: int, count: int, stop: str, matched: str | None
    ) -> AsyncIterator[Any]:
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_stub",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": plan.model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
                },
            },
        )
        yield _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield _sse("ping", {"type": "ping"})
        for index, piece in enumerate(reply_pieces(count)):
            if index == plan.fault_after and plan.fault == "malformed":
                # A delta event whose data is cut off, then the stream goes on as if nothing
                # happened: a client that skipped it would see a complete reply.
                yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
            elif index == plan.fault_after and plan.fault in MIDSTREAM_FAULTS:
                if plan.fault == "cut":
                    yield CUT
                elif plan.fault == "stall":
                    await self.hang()
                else:
                    yield _sse(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                return
            await self.sleep_per_token(plan.delay_ms)
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": matched},
                "usage": {"output_tokens": count},
            },
        )
        if plan.fault == "no-done":
            return
        yield _sse("message_stop", {"type": "message_stop"})


if __name__ == "__main__":
    cli(AnthropicStub)
