"""Redeliver jobs whose worker died (acks_late + Redis visibility timeout).

kombu's Redis transport restores unacknowledged messages older than the visibility timeout
from its event loop. Under the gevent pool the worker uses kombu's blocking drain loop
instead, which (kombu 5.7) returns before ever reaching that sweep, so a killed worker's job
would wait forever. This sweeper runs the same restore, under kombu's own mutex, on a timer.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

log = logging.getLogger(__name__)

RESTORE_BATCH = 100


def sweep_interval(visibility_timeout: int) -> float:
    # A tenth of the timeout: a dead worker's job comes back within ~1.1x the timeout.
    return max(1.0, min(30.0, visibility_timeout / 10))


def restore_abandoned(app: Celery) -> None:
    with app.connection_for_read() as connection:
        connection.default_channel.qos.restore_visible(num=RESTORE_BATCH, interval=1)


def start_redelivery_sweeper(app: Celery, visibility_timeout: int) -> threading.Thread:
    interval = sweep_interval(visibility_timeout)

    def sweep_forever() -> None:
        while True:
            try:
                restore_abandoned(app)
            except Exception as exc:  # the broker may be briefly away; try next time
                log.warning("redelivery sweep failed: %s", type(exc).__name__)
            time.sleep(interval)

    thread = threading.Thread(target=sweep_forever, name="redelivery-sweeper", daemon=True)
    thread.start()
    return thread
