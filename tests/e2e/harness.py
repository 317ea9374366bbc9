"""Real processes for end-to-end tests: a uvicorn API and Celery workers, on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.servers import die_with_parent

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> None:
        # SIGINT, not SIGTERM: uvicorn re-raises the signal it stopped on, and only SIGINT
        # lets Python unwind normally (so coverage data of the subprocess gets written).
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_dies_with_this_process(),
        )
    return Process(name, popen, log_path)


def _dies_with_this_process() -> Any:
    # A test process that is killed (a timeout, a crashed xdist worker) must leave no API or
    # Celery worker behind: one left consuming a Redis db takes the jobs of the next run there.
    # The kernel sends the parent-death signal when the *thread* that started the child ends,
    # so only children of the main thread, which lives as long as the process, ask for it.
    if threading.current_thread() is not threading.main_thread():
        return None
    return die_with_parent(signal.SIGKILL)


def start_api(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    process = start_process(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env,
        log_dir,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base_url + "/healthz"), 30, process)
    return process, base_url


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    queues: list[str] | None,
    concurrency: int = 50,
    name: str = "e2e",
) -> Process:
    """A worker started as `switchboard worker` starts it; `queues=None`: no -Q (every queue,
    new providers' included). The node name starts with `name`."""
    from shared.devserver import worker_command
    from shared.settings import get_settings

    command = worker_command(
        get_settings(),
        queues,
        concurrency,
        ["--without-mingle", "--without-gossip", "-n", f"{name}-{time.monotonic_ns()}@%h"],
    )
    process = start_process(f"{name}-worker", command, env, log_dir)
    wait_until(lambda: "ready." in process.log(), 60, process)
    return process


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    predicate: Any, timeout: float, process: Process | None = None, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-4000:]}")
        time.sleep(interval)
    detail = f"\n{process.name} log:\n{process.log()[-4000:]}" if process else ""
    raise TimeoutError(f"condition not met within {timeout}s{detail}")


@dataclass
class SSEEvent:
    event: str
    data: dict[str, Any]
    id: str | None


@dataclass
class SSEResult:
    events: list[SSEEvent] = field(default_factory=list)

    @property
    def text(self) -> str:
        parts: list[str] = []
        for event in self.events:
            if event.event in ("reset", "restart"):
                parts.clear()
            elif event.event == "token":
                parts.append(event.data["delta"])
        return "".join(parts)

    @property
    def last(self) -> SSEEvent:
        return self.events[-1]


def iter_sse(lines: Iterator[str]) -> Iterator[SSEEvent]:
    event, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                yield SSEEvent(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


def read_sse(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    *,
    stop_after: int | None = None,
    timeout: float = 30,
) -> SSEResult:
    """Read a stream to its end (or `stop_after` events, then disconnect)."""
    result = SSEResult()
    with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in iter_sse(response.iter_lines()):
            result.events.append(event)
            if stop_after is not None and len(result.events) >= stop_after:
                break
    return result


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    env.update(overrides)
    return env


def read_sse_within(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    seconds: float,
    on_event: Any = None,
) -> SSEResult:
    """Read a stream to its end, failing after `seconds` in all (`read_sse` bounds each read
    only, and heartbeats keep a stream that never ends alive). `on_event(event, result)` runs
    after each event, e.g. to inject a fault mid-stream."""
    result = SSEResult()
    deadline = time.monotonic() + seconds

    def lines_until_deadline(lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            if time.monotonic() > deadline:
                seen = [event.event for event in result.events]
                raise TimeoutError(f"{url} did not end within {seconds}s; events: {seen}")
            yield line

    with client.stream("GET", url, headers=headers, timeout=min(seconds, 30)) as response:
        assert response.status_code == 200, response.read()
        for event in iter_sse(lines_until_deadline(response.iter_lines())):
            result.events.append(event)
            if on_event is not None:
                on_event(event, result)
    return result
