"""`switchboard dev` and `switchboard worker`: run the service on one machine.

`dev` starts the API (uvicorn), one worker consuming every provider queue and Flower, on
embedded defaults: a SQLite file unless DATABASE_URL is set, and Redis from REDIS_URL, else a
`redis-server` from PATH, else fakeredis' TCP server in this process. Ctrl-C stops them all.
Without a SECRET_KEY it signs tokens with a random key kept in `.switchboard-secret` (mode
0600, in the working directory like the SQLite file), so logins survive a restart.
Only subprocess command lines are built here: nothing from api/ or workers/ is imported.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from shared.providers.catalog import provider_configs
from shared.settings import MIN_SECRET_KEY_LENGTH, Settings, get_settings

STOP_GRACE_SECONDS = 10
DEV_SECRET_FILE = ".switchboard-secret"


def worker_command(
    settings: Settings,
    queues: list[str] | None,
    concurrency: int | None,
    extra: list[str] | None = None,
) -> list[str]:
    # Without -Q the worker consumes every provider queue, admins' new ones included.
    selected = ["-Q", ",".join(queues)] if queues else []
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-P",
        "gevent",
        "-c",
        str(concurrency or settings.WORKER_CONCURRENCY),
        *selected,
        "--loglevel=INFO",
        *(extra or []),
    ]


def cmd_worker(args: argparse.Namespace) -> int:
    queues = args.queues.split(",") if args.queues else None
    command = worker_command(get_settings(), queues, args.concurrency)
    os.execv(command[0], command)  # replaces this process: signals go straight to Celery
    return 0  # pragma: no cover


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-Q", "--queues", help="comma-separated provider queues (default: all)")
    parser.add_argument(
        "-c", "--concurrency", type=int, help="generations in flight (default: WORKER_CONCURRENCY)"
    )


def persisted_secret_key(path: Path) -> str:
    """The key stored in `path`, or a new random one written there readable by its owner only."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= MIN_SECRET_KEY_LENGTH:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
            print(f"[dev] {path} was readable by others; now mode 0600")
        return key
    key = secrets.token_urlsafe(48)
    # Written to a fresh file created 0600 and renamed over: the key is never readable by
    # others, not even for a moment, and a crash cannot leave half a key behind.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.replace(partial, path)
    return key


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DevStack:
    env: dict[str, str]
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def start(self, name: str, command: list[str]) -> None:
        self.children.append((name, subprocess.Popen(command, env=self.env)))

    def ensure_redis(self, url: str, embedded: str) -> str:
        if _redis_answers(url):
            return url
        port = _free_port()
        server = shutil.which("redis-server") if embedded in ("auto", "redis-server") else None
        if server:
            data_dir = tempfile.mkdtemp(prefix="switchboard-redis-")
            process = subprocess.Popen(
                [
                    server,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    data_dir,
                ],
                stdout=subprocess.DEVNULL,
            )
            self.cleanups.append(process.terminate)
            print(f"[dev] Redis at {url} does not answer: started redis-server on port {port}")
        else:
            from fakeredis import TcpFakeServer

            fake = TcpFakeServer(("127.0.0.1", port), server_type="redis")
            threading.Thread(target=fake.serve_forever, daemon=True).start()
            self.cleanups.append(fake.shutdown)
            print(f"[dev] Redis at {url} does not answer: started embedded fakeredis on {port}")
        local = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _redis_answers(local):
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded Redis did not start")
            time.sleep(0.1)
        return local

    def wait(self) -> int:
        """Until Ctrl-C or a child exits; then stop everything."""
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        status = 0
        while not stopping.is_set():
            for name, child in self.children:
                if child.poll() is not None:
                    print(f"[dev] {name} exited with status {child.returncode}; stopping")
                    status = child.returncode or 1
                    stopping.set()
            stopping.wait(0.5)
        self.stop()
        return status

    def stop(self) -> None:
        for _name, child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _name, child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for cleanup in reversed(self.cleanups):
            cleanup()
        print("[dev] stopped")


def cmd_dev(args: argparse.Namespace) -> int:
    from shared.cli import cmd_migrate

    # The quick start answers out of the box with the demo provider.
    os.environ.setdefault("DEFAULT_PROVIDER", "echo")
    get_settings.cache_clear()
    if get_settings().SECRET_KEY is None:
        # Children inherit it through the environment; the file keeps tokens valid across
        # restarts without a key that anyone else could know.
        os.environ["SECRET_KEY"] = persisted_secret_key(Path(DEV_SECRET_FILE))
        get_settings.cache_clear()
        print(f"[dev] access tokens are signed with the key kept in {DEV_SECRET_FILE}")
    stack = DevStack(env=dict(os.environ))
    redis_url = stack.ensure_redis(get_settings().REDIS_URL, args.embedded_redis)
    os.environ["REDIS_URL"] = stack.env["REDIS_URL"] = redis_url
    get_settings.cache_clear()
    settings = get_settings()
    try:
        cmd_migrate(argparse.Namespace(revision="head"))
        stack.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                args.host,
                "--port",
                str(args.port),
            ],
        )
        stack.start(
            "worker",
            worker_command(
                settings, None, args.concurrency, ["--without-mingle", "--without-gossip", "-E"]
            ),
        )
        if args.flower_port:
            stack.start(
                "flower",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers.celery_app",
                    "flower",
                    f"--port={args.flower_port}",
                    f"--address={args.host}",
                ],
            )
    except BaseException:
        stack.stop()
        raise
    base = f"http://{args.host}:{args.port}"
    print(f"[dev] API     {base}  (interactive docs: {base}/docs)")
    if args.flower_port:
        print(
            f"[dev] Flower  http://{args.host}:{args.flower_port}  (queues: "
            f"{', '.join(provider_configs(settings))})"
        )
    print("[dev] Ctrl-C stops everything")
    return stack.wait()


def add_dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="API port")
    parser.add_argument("--flower-port", type=int, default=5555, help="0 disables Flower")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=50, help="the worker's generations in flight"
    )
    parser.add_argument(
        "--embedded-redis",
        choices=["auto", "redis-server", "fakeredis"],
        default="auto",
        help="what to start when REDIS_URL does not answer",
    )
