"""A worker process for tests/workers/test_database_outage.py, on a private PostgreSQL.

Run with DATABASE_URL naming that server: the worker's engine and settings are cached per
process, so a fresh process is the only faithful way to give it a database of its own. Like a
Celery worker of the gevent pool it runs monkey-patched, with psycopg2 made cooperative, so a
hard time limit (a gevent.Timeout thrown into the job's greenlet) can strike anywhere.

Arguments: reply id, FINISH_RETRY_SECONDS, and the seconds after the outage began at which
the hard time limit strikes (0: none).

Protocol, one JSON object a line on stdout, one command a line on stdin:
  -> {"event": "first-token"}           then waits for "go" (the test stops PostgreSQL)
  -> {"event": "first-run", "result": "stored" | "unavailable" | "<exception>", "text": ...}
                                         then waits for "again" (the test restarts PostgreSQL)
  -> {"event": "second-run", "result": ..., "tokens": <tokens the second run streamed>}
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402 (the patching comes first, as in the worker)
import json
import logging
import sys
import uuid

import gevent
import redis
from psycogreen.gevent import patch_psycopg

from shared.channel import ReplyPublisher, TokenChannel
from shared.db import DatabaseUnavailable
from shared.settings import Settings, get_settings
from workers.generation import run_generation


def say(event: str, **data: object) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def expect(command: str) -> None:
    line = sys.stdin.readline().strip()
    if line != command:
        raise SystemExit(f"expected {command!r} on stdin, got {line!r}")


class PausingPublisher(ReplyPublisher):
    def token(self, text: str) -> None:
        channel = self.channel
        assert isinstance(channel, RecordingChannel)
        channel.tokens.append(text)
        if channel.pause_at_first_token:
            channel.pause_at_first_token = False
            say("first-token")
            expect("go")
            if channel.hard_limit_after:
                # Thrown into this greenlet, wherever it then is: Celery's gevent pool
                # enforces TASK_TIME_LIMIT the same way.
                channel.hard_limit = gevent.Timeout(channel.hard_limit_after)
                channel.hard_limit.start()
        super().token(text)


class RecordingChannel(TokenChannel):
    """The worker's token channel, recording what it streams; it can pause the generation
    between the claim and the finish at its first token."""

    def __init__(self, client: redis.Redis, hard_limit_after: float) -> None:
        super().__init__(client, ttl_seconds=600, flush_interval=0.02)
        self.tokens: list[str] = []
        self.pause_at_first_token = True
        self.hard_limit_after = hard_limit_after
        self.hard_limit: gevent.Timeout | None = None

    def publisher(self, reply_id: object) -> ReplyPublisher:
        return PausingPublisher(self, reply_id)


def run(reply_id: uuid.UUID, settings: Settings, channel: RecordingChannel) -> str:
    try:
        run_generation(reply_id, settings=settings, channel=channel)
    except DatabaseUnavailable:
        return "unavailable"
    except BaseException as exc:
        return type(exc).__name__
    return "stored"


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    patch_psycopg()
    reply_id = uuid.UUID(sys.argv[1])
    first_settings = Settings(FINISH_RETRY_SECONDS=float(sys.argv[2]))
    channel = RecordingChannel(redis.Redis.from_url(get_settings().REDIS_URL), float(sys.argv[3]))

    result = run(reply_id, first_settings, channel)
    say("first-run", result=result, text="".join(channel.tokens))

    expect("again")
    channel.tokens.clear()
    # PostgreSQL is back: enough budget for the first attempt on a stale connection to fail.
    result = run(reply_id, Settings(FINISH_RETRY_SECONDS=30), channel)
    say("second-run", result=result, tokens=channel.tokens)


if __name__ == "__main__":
    main()
