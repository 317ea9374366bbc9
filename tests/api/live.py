"""A real uvicorn API (no worker) and a TCP proxy that can take a dependency away and back.

Keep-alive behaviour, client disconnects and outages are properties of the server process and
its sockets, which the in-process TestClient does not have. The proxy stands between the API
and PostgreSQL or Redis: `cut()` stops listening and resets every open connection (what a
server restart or a failover looks like to the API: established connections die, new ones are
refused), `restore()` listens again on the same port. The shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.harness import base_env, free_port, start_api


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._upstream: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def upstream_ports(self) -> set[int]:
        """Local ports of the proxy's connections to the target (as the target sees them)."""
        return {w.get_extra_info("sockname")[1] for w in list(self._upstream)}

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()  # RST: the peer's next read fails at once
        self._open.clear()
        self._upstream.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        self._upstream.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._open -= {writer, up_writer}
        self._upstream.discard(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()


def proxy_to(url: str) -> TcpProxy:
    parsed = make_url(url)
    return TcpProxy(parsed.host or "127.0.0.1", parsed.port or _default_port(parsed.drivername))


def _default_port(drivername: str) -> int:
    return 6379 if drivername.startswith("redis") else 5432


def via(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@contextlib.contextmanager
def live_api(log_dir: Path, **env: str) -> Iterator[str]:
    """A uvicorn API on the test database and Redis (or what `env` says); yields its URL."""
    settings = {
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        # Every test registers users from 127.0.0.1.
        "AUTH_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
    }
    process, url = start_api(base_env(**(settings | env)), log_dir)
    try:
        yield url
    finally:
        process.stop()


def connection_port(response: httpx.Response) -> int:
    """The client-side port of the TCP connection a response came on: equal ports across
    requests of one client mean the connection was kept alive."""
    stream = response.extensions["network_stream"]
    try:
        return int(stream.get_extra_info("client_addr")[1])
    except OSError:
        return -1  # already closed: the server hung up after this response


def one_connection_client(base_url: str, timeout: float = 30) -> httpx.Client:
    """A client that can only ever hold one connection, so reuse is observable."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.Client(base_url=base_url, timeout=timeout, limits=limits)


def api_redis_clients(proxy: TcpProxy, redis_client: redis.Redis) -> list[dict[str, Any]]:
    """Redis' CLIENT LIST entries of the API's connections through `proxy`."""
    ports = proxy.upstream_ports()
    return [
        entry
        for entry in redis_client.client_list()
        if int(str(entry["addr"]).rsplit(":", 1)[1]) in ports
    ]


def blocked_readers(proxy: TcpProxy, redis_client: redis.Redis) -> int:
    """How many of the API's Redis connections wait in a blocking read (XREAD BLOCK)."""
    return sum("b" in str(entry["flags"]) for entry in api_redis_clients(proxy, redis_client))
