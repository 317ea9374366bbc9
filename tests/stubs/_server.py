"""A tiny HTTP/1.1 server on raw asyncio streams, shared by the provider stubs.

Raw streams rather than a framework because the faults need control a framework hides:
dropping a connection mid-body (`CUT`), or never answering. Keep-alive and chunked
transfer-encoding are supported, so real clients reuse connections as they do in production;
thousands of concurrent streams are fine on one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.stubs._faults import REDIRECT_TARGET

CUT = object()  # yielded by a stream body: abort the connection without finishing the body

STATUS_TEXT = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> Response:
        merged = {
            "content-type": "application/json",
            **{k.replace("_", "-"): v for k, v in headers.items()},
        }
        return cls(status, json.dumps(payload).encode(), merged)


@dataclass
class StreamResponse:
    chunks: AsyncIterator[Any]  # bytes, or CUT
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class StubServer:
    """Base class: subclasses implement `handle`. Tunables apply to every normal reply."""

    name = "stub"
    base_path = ""  # appended to the base URL handed to clients (OpenAI's "/v1")

    def __init__(
        self, tokens: int = 8, token_delay_ms: float = 0.0, hang_seconds: float = 600.0
    ) -> None:
        self.tokens = tokens
        self.token_delay_ms = token_delay_ms
        self.hang_seconds = hang_seconds
        self.requests: deque[Request] = deque(maxlen=200)
        self.request_count = 0
        self.attempts: dict[str, int] = defaultdict(int)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    # -- for tests ----------------------------------------------------------------------

    @property
    def last_request(self) -> Request | None:
        return self.requests[-1] if self.requests else None

    @property
    def last_body(self) -> Any:
        return self.last_request.json() if self.last_request else None

    def requests_for(self, path_suffix: str) -> list[Request]:
        return [r for r in list(self.requests) if r.path.endswith(path_suffix)]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    # -- to implement -------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | StreamResponse:
        raise NotImplementedError

    async def _route(self, request: Request) -> Response | StreamResponse:
        if request.path.startswith(REDIRECT_TARGET):
            # Reached only by a client that followed a redirect. It answers like a success, so
            # the stub's request log, not the client's error, is what shows the redirect taken.
            return Response.json({"redirected": True})
        if request.path.startswith("/bounce"):
            # An endpoint configured under /bounce redirects every call (chat, models...).
            return self.redirect()
        return await self.handle(request)

    def redirect(self, status: int = 307) -> Response:
        """What a misbehaving upstream or proxy answers: go elsewhere, same method and body."""
        return Response(
            status,
            f"<html><body>{STATUS_TEXT[status]}</body></html>".encode(),
            {
                "location": f"http://127.0.0.1:{self.port}{REDIRECT_TARGET}",
                "content-type": "text/html",
            },
        )

    # -- serving ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Shutdown cancels hanging handlers; ending quietly keeps asyncio from logging it.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
        url = urlsplit(target)
        request = Request(method, url.path, parse_qs(url.query), headers, body)
        self.requests.append(request)
        self.request_count += 1
        try:
            response = await self._route(request)
        except Exception as exc:  # a stub bug should show up as a 500, not a hung client
            response = Response.json({"error": {"message": f"stub error: {exc!r}"}}, 500)
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if isinstance(response, Response):
            await _write_head(
                writer,
                response.status,
                {
                    **response.headers,
                    "content-length": str(len(response.body)),
                    "connection": "keep-alive" if keep_alive else "close",
                },
            )
            writer.write(response.body)
            await writer.drain()
            return keep_alive
        await _write_head(
            writer,
            response.status,
            {
                **response.headers,
                "transfer-encoding": "chunked",
                "connection": "keep-alive" if keep_alive else "close",
            },
        )
        await writer.drain()
        async for chunk in response.chunks:
            if chunk is CUT:
                writer.transport.abort()
                return False
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    def first_attempt(self, model: str, last_user_text: str) -> bool:
        """True the first time this (model, last user message) is seen: "429-then-ok"."""
        key = f"{model}|{last_user_text}"
        self.attempts[key] += 1
        return self.attempts[key] == 1

    async def sleep_per_token(self, delay_ms: float) -> None:
        await asyncio.sleep(delay_ms / 1000 if delay_ms > 0 else 0)

    async def hang(self) -> None:
        await asyncio.sleep(self.hang_seconds)

    # -- running ------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[str]:
        """Serve on a free loopback port from a background thread; yields the base URL."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # surface bind errors to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=run, name=f"{self.name}-stub", daemon=True)
        thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        try:
            yield self.base_url
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    def run_forever(self, host: str, port: int) -> None:
        async def main() -> None:
            await self.start(host, port)
            print(f"{self.name} stub listening on {self.base_url}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await self.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())


def cli(server_cls: type[StubServer], argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"{server_cls.name} wire-protocol stub")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per normal reply")
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    server = server_cls(
        tokens=args.tokens, token_delay_ms=args.token_delay_ms, hang_seconds=args.hang_seconds
    )
    server.run_forever(args.host, args.port)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length") or 0)
    return await reader.readexactly(length) if length else b""


async def _write_head(writer: asyncio.StreamWriter, status: int, headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
