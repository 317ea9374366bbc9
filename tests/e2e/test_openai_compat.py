"""The OpenAI-compatible API through the official openai SDK, against the running API, the
queue and a real worker (the providers are the wire-protocol stubs of tests/stubs)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest
from sqlalchemy import select

from api.reply_stream import REPLY_ID_HEADER
from shared.db import session_scope
from shared.models import Chat, Message, ProviderUsage
from tests.e2e.harness import wait_until
from tests.e2e.test_fallback import set_pool
from tests.helpers import register_and_login
from tests.stubs import reply_text

# The stubs' default reply: 8 tokens. They count prompt tokens as the prompt's words.
STUB_TOKENS = 8
SLOW_MODEL = "stub-model+tokens=40+delay=100"
# The Anthropic stub's short reply: the fallback of the restart test.
FALLBACK = ("anthropic", "stub-model+tokens=8")


@pytest.fixture
def sb_key(http: httpx.Client) -> str:
    headers = register_and_login(http)
    response = http.post("/auth/api-keys", json={"name": "openai sdk"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture
def client(api_url: str, sb_key: str) -> openai.OpenAI:
    # No retries: a retried call would be a second stored call, and hide the first answer.
    return openai.OpenAI(base_url=api_url + "/v1", api_key=sb_key, max_retries=0, timeout=30)


def _usage_rows(reply_id: str) -> list[ProviderUsage]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
            )
        )


def _poll(http: httpx.Client, key: str, reply_id: str) -> dict:
    result: dict = {}

    def finished() -> bool:
        response = http.get(f"/messages/{reply_id}", headers={"Authorization": f"Bearer {key}"})
        result.update(response.json())
        return result["status"] in ("completed", "failed", "cancelled")

    wait_until(finished, 30, interval=0.05)
    return result


def test_sync_completion_answers_the_stub_text_and_the_stored_usage(
    client: openai.OpenAI, http: httpx.Client, sb_key: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="openai/stub-model",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
        temperature=0.2,
        max_tokens=50,
        user="someone",
    )
    reply_id = raw.headers[REPLY_ID_HEADER]
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id == f"chatcmpl-{uuid.UUID(reply_id).hex}"
    assert completion.model == "openai/stub-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == reply_text(STUB_TOKENS)
    assert choice.finish_reason == "stop"

    [row] = _usage_rows(reply_id)
    assert row.status == "completed"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        row.prompt_tokens,
        row.completion_tokens,
    )
    assert completion.usage.total_tokens == row.tokens_used
    assert (row.prompt_tokens, row.completion_tokens) == (4, STUB_TOKENS)

    stored = _poll(http, sb_key, reply_id)
    assert stored["content"] == reply_text(STUB_TOKENS)
    assert (stored["provider"], stored["model"]) == ("openai", "stub-model")


def test_streaming_with_include_usage_ends_with_a_usage_chunk(
    client: openai.OpenAI, sb_key: str, http: httpx.Client
) -> None:
    stream = client.chat.completions.create(
        model="anthropic/stub-model",
        messages=[{"role": "user", "content": [{"type": "text", "text": "stream this please"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    reply_id = stream.response.headers[REPLY_ID_HEADER]
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text(STUB_TOKENS)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    [row] = _usage_rows(reply_id)
    assert usage_chunk.usage.prompt_tokens == row.prompt_tokens == 3
    assert usage_chunk.usage.completion_tokens == row.completion_tokens == STUB_TOKENS
    assert _poll(http, sb_key, reply_id)["content"] == text


def test_streaming_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="openai/stub-model",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_the_async_client_streams(api_url: str, sb_key: str) -> None:
    async def run() -> tuple[str, int | None]:
        async with openai.AsyncOpenAI(
            base_url=api_url + "/v1", api_key=sb_key, max_retries=0, timeout=30
        ) as client:
            stream = await client.chat.completions.create(
                model="anthropic/stub-model+tokens=8",
                messages=[{"role": "user", "content": "async please"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            text, completion_tokens = "", None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                if chunk.usage:
                    completion_tokens = chunk.usage.completion_tokens
            return text, completion_tokens

    text, completion_tokens = asyncio.run(run())
    assert text == reply_text(8)
    assert completion_tokens == 8


def test_a_bare_model_unique_across_providers_works_an_ambiguous_one_is_404(
    client: openai.OpenAI,
) -> None:
    bare = client.chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": "say this back"}]
    )
    assert bare.model == "echo-1"
    assert bare.choices[0].message.content
    assert bare.usage is not None and bare.usage.completion_tokens > 0
    named = client.chat.completions.create(
        model="echo/echo-1", messages=[{"role": "user", "content": "say this back"}]
    )
    assert named.choices[0].message.content == bare.choices[0].message.content

    # Every stub provider offers stub-model: the caller must say which.
    with pytest.raises(openai.NotFoundError) as ambiguous:
        client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert ambiguous.value.code == "model_not_found"
    assert "several providers" in ambiguous.value.message


def test_an_unknown_model_is_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="openai/gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert raised.value.status_code == 404
    with session_scope() as session:
        assert session.scalars(select(Chat)).all() == []


def test_errors_are_the_sdks_exceptions(api_url: str, client: openai.OpenAI) -> None:
    bad_key = openai.OpenAI(base_url=api_url + "/v1", api_key="sb_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        bad_key.models.list()
    assert unauthorized.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as stop:
        client.chat.completions.create(
            model="openai/stub-model",
            messages=[{"role": "user", "content": "hi"}],
            stop=["a", "b", "c", "d", "e"],
        )
    assert stop.value.param == "stop"


def test_a_stop_sequence_ends_the_reply_before_it(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="openai/stub-model", messages=[{"role": "user", "content": "count"}], stop=" tok3"
    )
    reply_id = raw.headers[REPLY_ID_HEADER]
    completion = raw.parse()
    assert completion.choices[0].message.content == reply_text(3)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    [row] = _usage_rows(reply_id)
    assert row.completion_tokens == 3
    with session_scope() as session:
        reply = session.get(Message, uuid.UUID(reply_id))
        assert reply is not None
        assert (reply.content, reply.stop) == (reply_text(3), [" tok3"])


def test_stop_sequences_reach_another_provider_on_a_stream(client: openai.OpenAI) -> None:
    # Anthropic's adapter sends them as `stop_sequences`; its stub ends the reply there.
    stream = client.chat.completions.create(
        model="anthropic/stub-model",
        messages=[{"role": "user", "content": "count"}],
        stop=["zz", " tok2"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text(2)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_a_provider_failure_is_an_api_error_and_the_reply_is_stored(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="openai/fault-401", messages=[{"role": "user", "content": "hi"}]
        )
    assert failed.value.status_code == 502
    reply_id = failed.value.response.headers[REPLY_ID_HEADER]
    assert f"/messages/{reply_id}" in failed.value.message
    with session_scope() as session:
        reply = session.get(Message, uuid.UUID(reply_id))
        assert reply is not None and reply.status == "failed"


def test_models_list(client: openai.OpenAI) -> None:
    ids = {model.id: model for model in client.models.list()}
    assert "openai/stub-model" in ids and "anthropic/stub-model" in ids and "echo/echo-1" in ids
    assert ids["openai/stub-model"].owned_by == "openai"
    assert ids["openai/stub-model"].object == "model"


def test_a_client_that_leaves_mid_stream_still_gets_a_stored_billed_reply(
    client: openai.OpenAI, http: httpx.Client, sb_key: str
) -> None:
    stream = client.chat.completions.create(
        model=f"openai/{SLOW_MODEL}",
        messages=[{"role": "user", "content": "a long one"}],
        stream=True,
    )
    reply_id = stream.response.headers[REPLY_ID_HEADER]
    received = []
    for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            break
    stream.close()
    assert "".join(c.choices[0].delta.content or "" for c in received) != ""

    stored = _poll(http, sb_key, reply_id)
    assert stored["status"] == "completed"
    assert stored["content"] == reply_text(40)
    [row] = _usage_rows(reply_id)
    assert row.status == "completed" and row.completion_tokens == 40

    # The call is a chat of kind api: not in the chat list unless asked for.
    headers = {"Authorization": f"Bearer {sb_key}"}
    assert http.get("/chats", headers=headers).json()["data"] == []
    listed = http.get("/chats", params={"kind": "api"}, headers=headers).json()["data"]
    assert [chat["id"] for chat in listed] == [stored["chat_id"]]


def _stream_until_error(stream: openai.Stream) -> tuple[str, openai.APIError]:
    text = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    return text, raised.value


def test_a_stream_that_fails_after_tokens_ends_with_an_error_line(
    client: openai.OpenAI, http: httpx.Client, sb_key: str
) -> None:
    stream = client.chat.completions.create(
        model="anthropic/fault-cut",
        messages=[{"role": "user", "content": "cut me"}],
        stream=True,
    )
    reply_id = stream.response.headers[REPLY_ID_HEADER]
    text, error = _stream_until_error(stream)
    assert text == reply_text(3)  # what the stub sent before it cut the stream
    assert f"GET /messages/{reply_id}" in error.message
    assert error.type == "server_error"
    stored = _poll(http, sb_key, reply_id)
    assert stored["status"] == "failed" and stored["content"].startswith("tok0")


def test_a_restart_after_tokens_ends_the_stream_and_the_reply_completes_on_the_fallback(
    client: openai.OpenAI, http: httpx.Client, sb_key: str
) -> None:
    # A pool whose heavy deployment fails after three tokens: the reply restarts on the other
    # (the chance the light one is tried first is one in a million).
    set_pool("openai-compat-restart", [("openai", "fault-cut", 10**6), (*FALLBACK, 1)])
    model = "pool:openai-compat-restart"
    wait_until(lambda: model in {m.id for m in client.models.list()}, 15, interval=0.2)

    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    reply_id = stream.response.headers[REPLY_ID_HEADER]
    text, error = _stream_until_error(stream)
    assert text == reply_text(3)
    assert "mid-stream" in error.message and f"GET /messages/{reply_id}" in error.message
    stored = _poll(http, sb_key, reply_id)
    assert (stored["status"], stored["content"]) == ("completed", reply_text(8))
    assert [a["provider"] for a in stored["attempts"]] == ["openai", "anthropic"]

    # Not streamed, the same route answers the fallback's text: nothing was sent to take back.
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == reply_text(8)
    assert completion.model == model
