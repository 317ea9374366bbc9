"""OpenAI Chat Completions wire protocol: `chat.completion.chunk` SSE ending in `data: [DONE]`.

With `stream_options.include_usage` the chunks carry `"usage": null` and one extra chunk with
empty `choices` and the usage comes right before `[DONE]`, as OpenAI documents.
Also serves every OpenAI-compatible provider in tests. Run: python -m tests.stubs.openai_stub
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
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

MODELS = ("gpt-4", "gpt-3.5-turbo", "gpt-4o", "gpt-4o-mini", "stub-model")


def _error(
    status: int, message: str, type_: str, code: str | None = None, **headers: str
) -> Response:
    return Response.json(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status,
        **headers,
    )


def _rate_limit_headers(plan: Plan, prompt_tokens: int) -> dict[str, str]:
    """OpenAI's six x-ratelimit-* headers, only when the model name has `+remaining=N`."""
    if plan.remaining_requests is None:
        return {}
    return {
        "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
        "x-ratelimit-limit-tokens": str(RATE_LIMIT_TOKENS),
        "x-ratelimit-remaining-requests": str(plan.remaining_requests),
        "x-ratelimit-remaining-tokens": str(RATE_LIMIT_TOKENS - prompt_tokens),
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "20ms",
    }


class OpenAIStub(StubServer):
    name = "openai"
    base_path = "/v1"

    def __init__(self, *args: Any, models: tuple[str, ...] = MODELS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = models

    async def handle(self, request: Request) -> Response | StreamResponse:
        path = request.path.removeprefix("/v1")
        if request.method == "GET" and path == "/models":
            return self._models(request)
        if request.method == "POST" and path == "/chat/completions":
            return await self._chat(request)
        return _error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error"
        )

    def _models(self, request: Request) -> Response:
        if not request.headers.get("authorization"):
            return _error(401, "You didn't provide an API key.", "invalid_request_error")
        return Response.json(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1686935002, "owned_by": "stub"}
                    for m in self.models
                ],
            }
        )

    async def _chat(self, request: Request) -> Response | StreamResponse:
        body = request.json()
        plan = plan_for(str(body.get("model", "")), self.tokens, self.token_delay_ms)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or plan.fault == "401":
            key = auth.removeprefix("Bearer ")
            # Real OpenAI echoes a masked key: adapters must keep even this out of messages.
            masked = f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "***"
            return _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if not is_known(plan, self.models):
            return _error(
                404,
                f"The model `{plan.model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        early = await self._early_fault(plan, body)
        if early is not None:
            return early
        messages = body.get("messages") or []
        prompt_tokens = plan.prompt_count(*(m.get("content") for m in messages))
        count = plan.tokens
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit is not None and limit < count:
            count, finish = int(limit), "length"
        count, matched = count_before_stop(count, stop_sequences(body.get("stop")))
        if matched is not None:
            finish = "stop"
        limits = _rate_limit_headers(plan, prompt_tokens)
        if not body.get("stream"):
            response = self._complete(plan, prompt_tokens, count, finish)
            response.headers.update(limits)
            return response
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamResponse(
            self._sse(plan, prompt_tokens, count, finish, include_usage),
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **limits,
            },
        )

    async def _early_fault(self, plan: Plan, body: dict[str, Any]) -> Response | None:
        fault = plan.fault
        if fault == "403":
            return _error(
                403,
                "Project does not have access to this model.",
                "invalid_request_error",
                "model_not_allowed",
            )
        if fault == "429" or (
            fault == "429-then-ok"
            and self.first_attempt(plan.model, last_user_text(body.get("messages") or []))
        ):
            return _error(
                429,
                f"Rate limit reached for {plan.model} on requests per min (RPM):"
                " Limit 3, Used 3, Requested 1. Please try again in 1s.",
                "requests",
                "rate_limit_exceeded",
                retry_after="1",
                x_ratelimit_remaining_requests="0",
            )
        if fault in ("quota", "billing"):
            return _error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if fault == "500":
            return _error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
            )
        if fault in ("overloaded", "529"):
            return _error(
                503, "The engine is currently overloaded, please try again later.", "server_error"
            )
        if fault == "context":
            return _error(
                400,
                "This model's maximum context length is 8192 tokens. However, "
                "your messages resulted in 9001 tokens. Please reduce the length of "
                "the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if fault == "bad-request":
            return _error(
                400, "Invalid value for 'temperature'.", "invalid_request_error", "invalid_value"
            )
        if fault == "redirect":
            return self.redirect()
        if fault == "hang":
            await self.hang()
        return None

    def _complete(self, plan: Plan, prompt_tokens: int, count: int, finish: str) -> Response:
        return Response.json(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": plan.model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "logprobs": None,
                        "message": {"role": "assistant", "content": "".join(reply_pieces(count))},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": count,
                    "total_tokens": prompt_tokens + count,
                },
            }
        )

    async def _sse(
        self, plan: Plan, prompt_tokens: int, count: int, finish: str, include_usage: bool
    ) -> AsyncIterator[Any]:
        created = int(time.time())
        base: dict[str, Any] = {
            "id": f"chatcmpl-stub{created}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": plan.model,
            "system_fingerprint": "fp_stub",
        }
        if include_usage:
            base["usage"] = None

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        def usage_of(completion_tokens: int) -> dict[str, int]:
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }

        yield event([choice({"role": "assistant", "content": "", "refusal": None})])
        for index, piece in enumerate(reply_pieces(count)):
            if index == plan.fault_after and plan.fault == "malformed":
                # A mangled line (a broken proxy, a truncated write), then the stream goes on
                # as if nothing happened: a client that skipped it would see a complete reply.
                yield b"data: {not json\n\n"
            elif index == plan.fault_after and plan.fault in MIDSTREAM_FAULTS:
                if plan.fault == "cut":
                    yield CUT
                elif plan.fault == "stall":
                    await self.hang()
                else:
                    if plan.fault == "usage-then-error" and include_usage:
                        # The usage chunk made it out; the stream broke right after it.
                        base.pop("usage", None)
                        yield event([], usage=usage_of(index))
                    yield (
                        b"data: "
                        + json.dumps(
                            {
                                "error": {
                                    "message": "The server had an error while processing your request.",  # noqa: E501
                                    "type": "server_error",
                                    "param": None,
                                    "code": None,
                                }
                            }
                        ).encode()
                        + b"\n\n"
                    )
                return
            await self.sleep_per_token(plan.delay_ms)
            yield event([choice({"content": piece})])
        if plan.fault == "no-done":
            return
        yield event([choice({}, finish)])
        if include_usage and plan.fault != "no-usage":
            base.pop("usage", None)
            yield event([], usage=usage_of(count))
        yield b"data: [DONE]\n\n"


if __name__ == "__main__":
    cli(OpenAIStub)
