"""Stopping a generation within about a second, whatever the provider is doing.

A generation reads its stop flag after each token, but a provider may say nothing for minutes
(before the first token, or stalled). One watchdog per worker process checks every watched
reply's stop flag in a single Redis round trip every `interval` seconds, and enforces each
reply's soft deadline and stall limit (no event from the provider for STREAM_STALL_SECONDS).
Under the gevent pool it interrupts the generation's greenlet where it waits (a socket read,
a retry sleep) by throwing `GenerationInterrupted` into it from the hub;
elsewhere (a plain thread) it can only raise the flag the generation checks at its next token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from shared.channel import stop_key

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
DEADLINE = "deadline"
STALLED = "stalled"


class GenerationInterrupted(BaseException):
    """Thrown into a generation. A BaseException, so no adapter's `except Exception` eats it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class Watch:
    reply_id: object
    deadline: float  # time.monotonic()
    greenlet: Any = None  # the gevent greenlet to interrupt, when there is one
    hub: Any = None  # that greenlet's hub
    reason: str | None = None  # why it was interrupted, once it was
    active: bool = True
    stall_seconds: float | None = None
    last_activity: float = field(default_factory=time.monotonic)
    _thrown: bool = field(default=False, repr=False)

    def touch(self) -> None:
        """The provider sent something: the stall clock starts again."""
        self.last_activity = time.monotonic()

    def interrupt(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.greenlet is None or self._thrown:
            return
        self._thrown = True
        # Run by the generation's hub while its greenlet is suspended; `active` is checked
        # there so the exception never lands after the watched block has ended.
        self.hub.loop.run_callback_threadsafe(self._throw_if_active)

    def _throw_if_active(self) -> None:
        if self.active and not self.greenlet.dead:
            self.greenlet.throw(GenerationInterrupted(self.reason or CANCELLED))


def _interruptible_greenlet() -> tuple[Any, Any]:
    """The current gevent greenlet and its hub, or (None, None) outside a gevent pool."""
    import gevent
    from gevent import monkey

    current = gevent.getcurrent()
    if not monkey.is_module_patched("socket") or not isinstance(current, gevent.Greenlet):
        return None, None
    return current, gevent.get_hub()


class Watchdog:
    def __init__(self, client: redis.Redis, interval: float) -> None:
        self.client = client
        self.interval = interval
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(
        self, reply_id: object, deadline: float, stall_seconds: float | None = None
    ) -> Iterator[Watch]:
        watch = Watch(reply_id, deadline, *_interruptible_greenlet(), stall_seconds=stall_seconds)
        with self._lock:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="generation-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield watch
        finally:
            watch.active = False
            with self._lock:
                self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.check()
            except Exception as exc:  # Redis briefly away: deadlines still hold next round
                log.warning("watchdog check failed: %s", type(exc).__name__)

    def check(self) -> None:
        with self._lock:
            watches = [w for w in self._watches if w.reason is None]
        if not watches:
            return
        now = time.monotonic()
        for watch in watches:
            if now >= watch.deadline:
                watch.interrupt(DEADLINE)
            elif (
                watch.stall_seconds is not None and now - watch.last_activity >= watch.stall_seconds
            ):
                watch.interrupt(STALLED)
        pending = [w for w in watches if w.reason is None]
        if not pending:
            return
        pipe = self.client.pipeline(transaction=False)
        for watch in pending:
            pipe.exists(stop_key(watch.reply_id))
        for watch, flagged in zip(pending, pipe.execute(), strict=True):
            if flagged:
                watch.interrupt(CANCELLED)
