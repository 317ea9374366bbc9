"""Ollama native API: POST /api/chat streams NDJSON (one JSON object a line) ending in a line with
`"done": true` and the counts; GET /api/tags lists local models; errors are `{"error": "..."}`.
Run: python -m tests.stubs.ollama_stub --port N
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from tests.stubs._faults import (
    MIDSTREAM_FAULTS,
    Plan,
    count_before_stop,
    is_known,
    last_user_text,
    plan_for,
    reply_pieces,
    stop_sequences,
)
from tests.stubs._server import CUT, Request, Response, StreamResponse, StubServer, cli

MODELS = ("llama3.1:8b-instruct-q8_0", "stub-model")


def _error(status: int, message: str, **headers: str) -> Response:
    return Response.json({"error": message}, status, **headers)


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class OllamaStub(StubServer):
    name = "ollama"

    def __init__(self, *args: Any, models: tuple[str, ...] = MODELS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = models

    async def handle(self, request: Request) -> Response | StreamResponse:
        if request.method == "GET" and request.path in ("/", ""):
            return Response(200, b"Ollama is running", {"content-type": "text/plain"})
        if request.method == "GET" and request.path == "/api/version":
            return Response.json({"version": "0.5.7"})
        if request.method == "GET" and request.path == "/api/tags":
            return Response.json(
                {
                    "models": [
                        {
                            "name": m,
                            "model": m,
                            "modified_at": "2024-07-23T00:00:00Z",
                            "size": 8_540_000_000,
                            "digest": "0" * 64,
                            "details": {
                                "parent_model": "",
                                "format": "gguf",
                                "family": "llama",
                                "families": ["llama"],
                                "parameter_size": "8.0B",
                                "quantization_level": "Q8_0",
                            },
                        }
                        for m in self.models
                    ]
                }
            )
        if request.method == "POST" and request.path == "/api/chat":
            return await self._chat(request)
        return Response(404, b"404 page not found", {"content-type": "text/plain"})

    async def _chat(self, request: Request) -> Response | StreamResponse:
        body = request.json()
        plan = plan_for(str(body.get("model", "")), self.tokens, self.token_delay_ms)
        messages = body.get("messages") or []
        if not is_known(plan, self.models):
            return _error(404, f'model "{plan.model}" not found, try pulling it first')
        early = await self._early_fault(plan, messages)
        if early is not None:
            return early
        prompt_tokens = plan.prompt_count(*(m.get("content") for m in messages))
        count, reason = plan.tokens, "stop"
        limit = (body.get("options") or {}).get("num_predict")
        if limit is not None and 0 <= int(limit) < count:
            count, reason = int(limit), "length"
        stop = stop_sequences((body.get("options") or {}).get("stop"))
        count, matched = count_before_stop(count, stop)
        if matched is not None:
            reason = "stop"
        if body.get("stream", True) is False:
            return Response.json(
                {
                    "model": plan.model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": "".join(reply_pieces(count))},
                    "done_reason": reason,
                    "done": True,
                    **self._counts(plan, prompt_tokens, count),
                }
            )
        return StreamResponse(
            self._lines(plan, prompt_tokens, count, reason),
            headers={"content-type": "application/x-ndjson"},
        )

    async def _early_fault(self, plan: Plan, messages: list[dict[str, Any]]) -> Response | None:
        fault = plan.fault
        # Ollama itself has no auth or rate limits; these model a reverse proxy in front of it.
        if fault in ("401", "403"):
            return _error(int(fault), "unauthorized")
        if fault == "429" or (
            fault == "429-then-ok" and self.first_attempt(plan.model, last_user_text(messages))
        ):
            return _error(429, "too many requests", retry_after="1")
        if fault == "500":
            return _error(500, "llama runner process has terminated: signal: killed")
        if fault in ("overloaded", "529"):
            return _error(503, "server busy, please try again.  maximum pending requests exceeded")
        if fault == "context":
            return _error(400, "input length exceeds the context length")
        if fault == "bad-request":
            return _error(400, "invalid options: temperature")
        if fault == "redirect":
            return self.redirect()
        if fault == "hang":
            await self.hang()
        return None

    @staticmethod
    def _counts(plan: Plan, prompt_tokens: int, count: int) -> dict[str, int]:
        if plan.fault == "no-usage":
            return {}
        return {
            "total_duration": 1_000_000 * (count + 1),
            "load_duration": 1_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 1_000,
            "eval_count": count,
            "eval_duration": 1_000_000 * count,
        }

    async def _lines(
        self, plan: Plan, prompt_tokens: int, count: int, reason: str
    ) -> AsyncIterator[Any]:
        for index, piece in enumerate(reply_pieces(count)):
            if index == plan.fault_after and plan.fault == "malformed":
                # A line cut off mid-object, then the stream goes on as if nothing happened: a
                # client that skipped it would see a complete reply.
                yield b'{"model": "' + plan.model.encode() + b'", "created_at": \n'
            elif index == plan.fault_after and plan.fault in MIDSTREAM_FAULTS:
                if plan.fault == "cut":
                    yield CUT
                elif plan.fault == "stall":
                    await self.hang()
                else:
                    yield _line(
                        {
                            "error": "an error was encountered while running the model: "
                            "unexpected EOF"
                        }
                    )
                return
            await self.sleep_per_token(plan.delay_ms)
            yield _line(
                {
                    "model": plan.model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
        if plan.fault == "no-done":
            return
        yield _line(
            {
                "model": plan.model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
                **self._counts(plan, prompt_tokens, count),
            }
        )


if __name__ == "__main__":
    cli(OllamaStub)
