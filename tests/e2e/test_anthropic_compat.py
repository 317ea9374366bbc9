"""The Anthropic-compatible API through the official anthropic SDK, against the running API,
the queue and a real worker (the providers are the wire-protocol stubs of tests/stubs)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from sqlalchemy import select

from api.reply_stream import REPLY_ID_HEADER
from shared.db import session_scope
from shared.models import Chat, Message, ProviderUsage
from shared.settings import get_settings
from tests.e2e.harness import wait_until
from tests.helpers import register_and_login
from tests.stubs import reply_text, word_count

# The stubs' default reply: 8 tokens. They count prompt tokens as the prompt's words (the
# Anthropic stub counts `system` too; the OpenAI stub every message, the system one included).
STUB_TOKENS = 8
SYSTEM = "answer in few words"
QUESTION = "hello there"


@pytest.fixture
def sb_key(http: httpx.Client) -> str:
    headers = register_and_login(http)
    response = http.post("/auth/api-keys", json={"name": "anthropic sdk"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture
def client(api_url: str, sb_key: str) -> anthropic.Anthropic:
    # No retries: a retried call would be a second stored call, and hide the first answer.
    return anthropic.Anthropic(base_url=api_url, api_key=sb_key, max_retries=0, timeout=30)


def _usage_row(reply_id: str) -> ProviderUsage:
    with session_scope() as session:
        return session.scalars(
            select(ProviderUsage).where(ProviderUsage.message_id == uuid.UUID(reply_id))
        ).one()


def _reply(reply_id: str) -> tuple[Message, Chat]:
    with session_scope() as session:
        reply = session.get(Message, uuid.UUID(reply_id))
        assert reply is not None
        chat = session.get(Chat, reply.chat_id)
        assert chat is not None
        session.expunge_all()
        return reply, chat


def _assert_usage_stored(reply_id: str, usage: anthropic.types.Usage) -> None:
    row = _usage_row(reply_id)
    assert (usage.input_tokens, usage.output_tokens) == (row.prompt_tokens, row.completion_tokens)
    assert row.status == "completed"


def test_create_answers_the_stub_text_and_the_stored_usage(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="anthropic/stub-model",
        max_tokens=50,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        metadata={"user_id": "someone"},
        # This SDK's create() no longer names `temperature`; the API still takes it.
        extra_body={"temperature": 0.2},
    )
    reply_id = raw.headers[REPLY_ID_HEADER]
    message = raw.parse()
    assert message.id == f"msg_{uuid.UUID(reply_id).hex}"
    assert (message.type, message.role, message.model) == (
        "message",
        "assistant",
        "anthropic/stub-model",
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == reply_text(STUB_TOKENS)
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    # The system prompt reached the stub: it counted its words.
    assert message.usage.input_tokens == word_count(SYSTEM, QUESTION)
    assert message.usage.output_tokens == STUB_TOKENS
    _assert_usage_stored(reply_id, message.usage)
    reply, chat = _reply(reply_id)
    assert chat.kind == "api"
    assert (reply.temperature, reply.max_tokens) == (0.2, 50)
    assert reply.content == reply_text(STUB_TOKENS)
    assert reply.prompt == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]


def test_max_tokens_cuts_the_reply_and_says_so(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="anthropic/stub-model",
        max_tokens=3,
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    )
    assert message.content[0].text == reply_text(3)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_stream_gives_the_text_and_the_stored_usage(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="anthropic/stub-model",
        max_tokens=50,
        system=[{"type": "text", "text": SYSTEM}],
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        reply_id = stream.response.headers[REPLY_ID_HEADER]
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reply_text(STUB_TOKENS)
    assert final.content[0].text == text
    assert final.id == f"msg_{uuid.UUID(reply_id).hex}"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == word_count(SYSTEM, QUESTION)
    assert final.usage.output_tokens == STUB_TOKENS
    _assert_usage_stored(reply_id, final.usage)
    reply, _ = _reply(reply_id)
    assert reply.prompt[0] == {"role": "system", "content": SYSTEM}


def test_stream_events_arrive_in_anthropics_order(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="anthropic/stub-model+tokens=8",
            max_tokens=50,
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * len(kinds[2:-3]),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert "".join(deltas) == reply_text(8)


def test_async_client_creates_and_streams(api_url: str, sb_key: str) -> None:
    async def calls() -> tuple[anthropic.types.Message, str, anthropic.types.Message]:
        async with anthropic.AsyncAnthropic(
            base_url=api_url, api_key=sb_key, max_retries=0, timeout=30
        ) as client:
            created = await client.messages.create(
                model="anthropic/stub-model",
                max_tokens=50,
                messages=[{"role": "user", "content": QUESTION}],
            )
            async with client.messages.stream(
                model="anthropic/stub-model",
                max_tokens=50,
                messages=[{"role": "user", "content": QUESTION}],
            ) as stream:
                text = "".join([part async for part in stream.text_stream])
                final = await stream.get_final_message()
            return created, text, final

    created, text, final = asyncio.run(calls())
    assert created.content[0].text == reply_text(STUB_TOKENS)
    assert text == reply_text(STUB_TOKENS)
    assert final.usage.output_tokens == STUB_TOKENS
    assert final.usage.input_tokens == created.usage.input_tokens == word_count(QUESTION)


@pytest.mark.parametrize("stream", [False, True])
def test_another_providers_model_is_translated_by_its_adapter(
    client: anthropic.Anthropic, stream: bool
) -> None:
    model = "openai/stub-model+tokens=8"
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": QUESTION}]
    if stream:
        with client.messages.stream(
            model=model, max_tokens=50, system=SYSTEM, messages=messages
        ) as live:
            reply_id = live.response.headers[REPLY_ID_HEADER]
            text = "".join(live.text_stream)
            message = live.get_final_message()
        assert text == reply_text(8)
    else:
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=50, system=SYSTEM, messages=messages
        )
        reply_id = raw.headers[REPLY_ID_HEADER]
        message = raw.parse()
    assert message.content[0].text == reply_text(8)
    assert message.usage.input_tokens == word_count(SYSTEM, QUESTION)
    _assert_usage_stored(reply_id, message.usage)
    reply, _ = _reply(reply_id)
    assert (reply.provider_name, reply.model_name) == ("openai", "stub-model+tokens=8")


def test_an_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(
            model="anthropic/no-such-model",
            max_tokens=50,
            messages=[{"role": "user", "content": QUESTION}],
        )
    assert raised.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_wrong_key_is_an_authentication_error(api_url: str, http: httpx.Client) -> None:
    client = anthropic.Anthropic(base_url=api_url, api_key="sb_not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model="anthropic/stub-model",
            max_tokens=50,
            messages=[{"role": "user", "content": QUESTION}],
        )


def test_a_stop_sequence_ends_the_reply_and_is_named(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="anthropic/stub-model",
        max_tokens=50,
        stop_sequences=[" tok3"],
        messages=[{"role": "user", "content": QUESTION}],
    )
    message = raw.parse()
    assert [block.text for block in message.content if block.type == "text"] == [reply_text(3)]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " tok3")
    assert message.usage.output_tokens == 3
    reply, _ = _reply(raw.headers[REPLY_ID_HEADER])
    assert (reply.content, reply.stop, reply.finish_reason) == (
        reply_text(3),
        [" tok3"],
        "stop_sequence",
    )
    assert _usage_row(raw.headers[REPLY_ID_HEADER]).completion_tokens == 3


def test_stop_sequences_on_a_stream_to_an_openai_provider(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="openai/stub-model",
        max_tokens=50,
        stop_sequences=[" tok4", "zz"],
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reply_text(4)
    # OpenAI's API says `stop` whether a sequence or the model ended the reply.
    assert (final.stop_reason, final.stop_sequence) == ("end_turn", None)
    assert final.usage.output_tokens == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_generation_is_an_api_error_naming_the_stored_reply(
    client: anthropic.Anthropic, stream: bool
) -> None:
    with pytest.raises(anthropic.APIStatusError) as raised:
        if stream:
            with client.messages.stream(
                model="anthropic/fault-401",
                max_tokens=50,
                messages=[{"role": "user", "content": QUESTION}],
            ) as live:
                "".join(live.text_stream)
        else:
            client.messages.create(
                model="anthropic/fault-401",
                max_tokens=50,
                messages=[{"role": "user", "content": QUESTION}],
            )
    assert "GET /messages/" in str(raised.value)
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_the_raw_stream_names_every_event_as_anthropic_does(
    http: httpx.Client, sb_key: str
) -> None:
    headers = {"x-api-key": sb_key, "anthropic-version": "2023-06-01"}
    request = {
        "model": "anthropic/stub-model",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    with http.stream("POST", "/v1/messages", json=request, headers=headers) as response:
        assert response.status_code == 200
        assert REPLY_ID_HEADER in response.headers
        names = [
            line.removeprefix("event: ")
            for line in response.iter_lines()
            if line.startswith("event: ")
        ]
    # The worker sends deltas in batches after the first: at least one, any number.
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_a_client_that_leaves_mid_stream_still_gets_a_stored_billed_reply(
    client: anthropic.Anthropic,
) -> None:
    model = "anthropic/stub-model+tokens=40+delay=50"
    with client.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        reply_id = stream.response.headers[REPLY_ID_HEADER]
        first = next(iter(stream.text_stream))
    assert first == reply_text(1)

    def finished() -> bool:
        reply, _ = _reply(reply_id)
        return reply.status == "completed"

    wait_until(finished, 30, interval=0.05)
    reply, _ = _reply(reply_id)
    assert reply.content == reply_text(40)
    row = _usage_row(reply_id)
    assert (row.completion_tokens, row.status) == (40, "completed")


def test_a_chunked_body_over_the_limit_is_request_too_large(
    http: httpx.Client, sb_key: str
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        yield b'{"model": "anthropic/stub-model", "max_tokens": 5, "messages": [{"role": '
        yield b'"user", "content": "' + b"x" * (get_settings().MAX_REQUEST_BODY_BYTES + 10)
        yield b'"}]}'

    response = http.post(
        "/v1/messages",
        content=chunks(),
        headers={"x-api-key": sb_key, "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["type"] == "request_too_large"
