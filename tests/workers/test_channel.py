"""The token channel against real Redis: batching keeps order, the end comes last."""

from __future__ import annotations

import json
import threading
import uuid

import redis

from shared.channel import TokenChannel, pubsub_channel, stream_key
from tests.conftest import TEST_REDIS_URL


def _entries(client: redis.Redis, reply_id: uuid.UUID) -> list[tuple[str, dict]]:
    return [(f["event"], json.loads(f["data"])) for _id, f in client.xrange(stream_key(reply_id))]


def test_batched_deltas_keep_order_and_end_last(redis_clean):
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    channel = TokenChannel(client, ttl_seconds=60, flush_interval=0.005)
    replies = [uuid.uuid4() for _ in range(3)]
    publishers = [channel.publisher(r) for r in replies]

    def generate(publisher, index: int) -> None:
        for n in range(200):
            publisher.token(f"{index}:{n} ")
        publisher.finish("done", {"status": "completed"})

    threads = [threading.Thread(target=generate, args=(p, i)) for i, p in enumerate(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for index, reply_id in enumerate(replies):
        entries = _entries(client, reply_id)
        assert entries[-1] == ("done", {"status": "completed"})
        text = "".join(data["delta"] for event, data in entries if event == "token")
        assert text == "".join(f"{index}:{n} " for n in range(200))
        assert entries[0][1]["delta"] == f"{index}:0 "  # the first delta is never held back
        assert len(entries) < 200  # batched, not one entry per token
        assert 0 < client.ttl(stream_key(reply_id)) <= 60
    client.close()


def test_pubsub_carries_the_same_entries(redis_clean):
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    reply_id = uuid.uuid4()
    subscriber = client.pubsub()
    subscriber.subscribe(pubsub_channel(reply_id))
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    channel = TokenChannel(client, ttl_seconds=60, flush_interval=0.005)
    publisher = channel.publisher(reply_id)
    publisher.token("hello")
    publisher.finish("done", {"status": "completed"})
    received = []
    while len(received) < 2:
        message = subscriber.get_message(timeout=2)
        assert message is not None
        received.append(json.loads(message["data"]))
    stream_ids = [entry_id for entry_id, _ in client.xrange(stream_key(reply_id))]
    assert [m["id"] for m in received] == stream_ids
    assert [(m["event"], m["data"]) for m in received] == [
        ("token", {"delta": "hello"}),
        ("done", {"status": "completed"}),
    ]
    subscriber.close()
    client.close()
