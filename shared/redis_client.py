"""Redis clients with explicit pool sizes and timeouts.

redis-py 8 defaults to a 100-connection pool and a 5 s socket timeout: more than 100 SSE
readers or worker greenlets then fail, and a long blocking read times out. Size them here.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

MAX_CONNECTIONS = 2000
CONNECT_TIMEOUT_SECONDS = 5.0


def sync_redis(url: str, *, socket_timeout: float | None = 30.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=True,
    )


def async_redis(url: str, *, socket_timeout: float | None = 60.0) -> aioredis.Redis:
    # Blocking reads (XREAD BLOCK) must stay below socket_timeout; see shared/channel.py.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        decode_responses=True,
    )
    return aioredis.Redis(connection_pool=pool)
