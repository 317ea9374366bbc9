"""Throwaway PostgreSQL and Redis servers for the tests, on loopback ports of their own.

Two uses:
- `ensure_test_servers` (tests/conftest.py): when nothing answers where TEST_DATABASE_URL or
  TEST_REDIS_URL point (a fresh machine without those services), start a throwaway server
  instead of failing, and give back the URLs to use.
- `PrivatePostgres` / `PrivateRedis` (fault tests): servers a test may kill, restart or cut
  off without touching the shared ones.

PostgreSQL comes from the `pgserver` wheel's bundled binaries (a dev dependency, so pip alone
provides it), else the distribution's /usr/lib/postgresql/*/bin, else `initdb` on PATH. initdb
and postgres refuse to run as root, so as root they run as the `postgres` user, else `nobody`.
Redis is `redis-server` from PATH, else fakeredis' TCP server in a child process.

Every server is a child of this process: stopped at exit (atexit), killed by the kernel if
this process dies first (PR_SET_PDEATHSIG), and its data directory removed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15

# Loaded before any fork: the child calls only this already-resolved function.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def accepts_connections(host: str | None, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections there (no host: PostgreSQL's default socket)."""
    if not host or host.startswith("/"):
        path = Path(host or "/var/run/postgresql") / f".s.PGSQL.{port}"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
            except OSError:
                return False
            return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def die_with_parent(sig: int) -> Callable[[], None] | None:
    if _LIBC is None:
        return None
    prctl = _LIBC.prctl

    def set_death_signal() -> None:
        # Runs in the child after the uid switch (which would clear the setting).
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return set_death_signal


def _wait_for(
    ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {START_TIMEOUT_SECONDS}s:\n{_tail(log)}")


def _tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


_TEMP_PREFIX = "switchboard-test-"
_OWNER_FILE = "owner.pid"


def _owned_temp_dir(kind: str) -> Path:
    """A temporary directory that names the process it belongs to."""
    _remove_orphaned_temp_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{kind}-"))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


def _remove_orphaned_temp_dirs() -> None:
    # A killed test run cannot clean up (its servers die with it, their data stays):
    # the next run removes what belongs to processes that no longer exist.
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, another account's


_live: list[PrivatePostgres | PrivateRedis] = []


def stop_all() -> None:
    """Stop every server this process started and remove their data (idempotent)."""
    while _live:
        _live[-1].remove()


atexit.register(stop_all)


# PostgreSQL


def _postgres_user() -> str | None:
    """The account to run initdb/postgres as: they refuse root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a postgres nor a nobody account exists")


def _candidate_bin_dirs() -> list[tuple[Path, str]]:
    candidates: list[tuple[Path, str]] = []
    # Located, not imported: importing pgserver sets up lock files we do not use.
    wheel = importlib.util.find_spec("pgserver")
    if wheel is not None and wheel.submodule_search_locations:
        for location in wheel.submodule_search_locations:
            candidates.append((Path(location) / "pginstall" / "bin", "pgserver"))
    distribution = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [(path, "system") for path in distribution]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append((Path(on_path).resolve().parent, "PATH"))
    return [(path, origin) for path, origin in candidates if (path / "postgres").exists()]


def _as_account(user: str | None) -> dict[str, object]:
    """subprocess arguments that run a child as `user`, without root's groups."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _runs_as(binary: Path, user: str | None) -> str | None:
    """`postgres --version` as `user`, or None when that account cannot run it."""
    try:
        result = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            **_as_account(user),  # type: ignore[call-overload]
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass
class _Binaries:
    bin_dir: Path
    version: str  # e.g. "PostgreSQL 16.2"
    origin: str
    user: str | None
    copy_dir: Path | None = None  # a readable copy, removed at exit


_binaries: _Binaries | None = None


def postgres_binaries() -> _Binaries:
    """The first PostgreSQL installation the server account can run (found once)."""
    global _binaries
    if _binaries is not None:
        return _binaries
    user = _postgres_user()
    candidates = _candidate_bin_dirs()
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL binaries: install the dev extra (pip install -e '.[dev]' brings "
            "pgserver) or the distribution's postgresql package"
        )
    for bin_dir, origin in candidates:
        version = _runs_as(bin_dir / "postgres", user)
        if version:
            _binaries = _Binaries(bin_dir, _short_version(version), origin, user)
            return _binaries
    # A wheel under a private home (/root/...) is not reachable for the server account:
    # run a world-readable copy of the bundled installation instead, laid out as in
    # site-packages (the binaries find their libraries at $ORIGIN/../../../pgserver.libs).
    wheel = next((path for path, origin in candidates if origin == "pgserver"), None)
    if wheel is not None:
        site_packages = wheel.parents[2]
        copy_dir = _owned_temp_dir("pgbin")
        atexit.register(shutil.rmtree, copy_dir, True)
        copy_dir.chmod(0o755)
        shutil.copytree(wheel.parent, copy_dir / "pgserver" / "pginstall", symlinks=True)
        if (site_packages / "pgserver.libs").is_dir():
            shutil.copytree(site_packages / "pgserver.libs", copy_dir / "pgserver.libs")
        bin_dir = copy_dir / "pgserver" / "pginstall" / "bin"
        version = _runs_as(bin_dir / "postgres", user)
        if version and _runs_as(bin_dir / "initdb", user):
            _binaries = _Binaries(bin_dir, _short_version(version), "pgserver", user, copy_dir)
            return _binaries
    raise RuntimeError(f"no PostgreSQL installation runs as {user}: tried {candidates}")


def _short_version(version_line: str) -> str:
    # "postgres (PostgreSQL) 16.2" -> "PostgreSQL 16.2"; distributions append their own build
    # ("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"), which is left out.
    words = version_line.split()
    after = words.index("(PostgreSQL)") + 1 if "(PostgreSQL)" in words else len(words) - 1
    return "PostgreSQL " + words[min(after, len(words) - 1)]


@dataclass(eq=False)
class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:`port`, trust auth, no durability.

    `stop()` then `start()` restarts it on the same port with its data; `remove()` deletes it.
    """

    port: int = field(default_factory=free_port)
    superuser: str = "postgres"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.binaries = postgres_binaries()
        self.root = _owned_temp_dir("pg")
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        _live.append(self)  # from here on, stop_all() removes it whatever fails next
        if self.binaries.user:
            account = pwd.getpwnam(self.binaries.user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._initdb()

    def _run_as(self, args: list[str]) -> None:
        result = subprocess.run(
            args,
            cwd=self.root,
            **_as_account(self.binaries.user),  # type: ignore[call-overload]
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def _initdb(self) -> None:
        self._run_as(
            [
                str(self.binaries.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    @property
    def description(self) -> str:
        return (
            f"{self.binaries.version} ({self.binaries.origin} binaries) on {LOOPBACK}:{self.port}"
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.superuser}@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> object:
        import psycopg2

        connection = psycopg2.connect(
            host=LOOPBACK, port=self.port, user=self.superuser, dbname=database, connect_timeout=5
        )
        connection.autocommit = True
        return connection

    def _answers(self) -> bool:
        try:
            self.connect().close()  # type: ignore[attr-defined]
        except Exception:
            return False
        return True

    def start(self) -> PrivatePostgres:
        if self.process is not None and self.process.poll() is None:
            return self
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binaries.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    # A test server: speed over durability.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # SIGQUIT: immediate shutdown, backends included.
                preexec_fn=die_with_parent(signal.SIGQUIT),
                **_as_account(self.binaries.user),  # type: ignore[call-overload]
            )
        _wait_for(self._answers, f"PostgreSQL on port {self.port}", self.process, self.log_path)
        return self

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: fast shutdown (clients disconnected); SIGQUIT: immediate, like a crash."""
        _stop_process(self.process, sig)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def create_database(self, name: str) -> str:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()  # type: ignore[attr-defined]
        return self.url(name)

    def terminate_backends(self, database: str) -> int:
        """What a failover does to clients: every other connection to `database` is cut."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(
                    "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity"
                    " where datname = %s and pid <> pg_backend_pid()",
                    (database,),
                )
                return int(cursor.fetchone()[0])
        finally:
            connection.close()  # type: ignore[attr-defined]


# Redis

_FAKEREDIS_SERVER = """
import sys
from fakeredis import TcpFakeServer

server = TcpFakeServer(("127.0.0.1", int(sys.argv[1])), server_type="redis")
server.serve_forever()
"""


@dataclass(eq=False)
class PrivateRedis:
    """A throwaway Redis on 127.0.0.1:`port` that keeps nothing on disk.

    `stop()` then `start()` is a restart without persistence, on the same port.
    """

    port: int = field(default_factory=free_port)
    implementation: str = "auto"  # "redis-server", "fakeredis" or "auto" (the first available)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        server = shutil.which("redis-server")
        if self.implementation == "auto":
            self.implementation = "redis-server" if server else "fakeredis"
        if self.implementation == "redis-server" and not server:
            raise RuntimeError("redis-server is not on PATH")
        self.root = _owned_temp_dir("redis")
        self.log_path = self.root / "redis.log"
        _live.append(self)

    @property
    def description(self) -> str:
        return f"{self.implementation} on {LOOPBACK}:{self.port}"

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def _command(self) -> list[str]:
        if self.implementation == "fakeredis":
            return [sys.executable, "-c", _FAKEREDIS_SERVER, str(self.port)]
        return [
            str(shutil.which("redis-server")),
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--protected-mode",
            "no",
        ]

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> PrivateRedis:
        if self.process is not None and self.process.poll() is None:
            return self
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        _wait_for(self._answers, f"{self.description}", self.process, self.log_path)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop_process(self.process, sig)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    try:
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def private_redis(implementation: str = "auto") -> Iterator[PrivateRedis]:
    server = PrivateRedis(implementation=implementation).start()
    try:
        yield server
    finally:
        server.remove()


# The test session's servers


@dataclass
class SessionServers:
    database_url: str
    redis_url: str
    started: list[str] = field(default_factory=list)  # one line per server started
    servers: list[PrivatePostgres | PrivateRedis] = field(default_factory=list)


def ensure_test_servers(database_url: str, redis_url: str) -> SessionServers:
    """The URLs to test against: the given ones when their servers answer, else throwaway
    servers' (same database name, user and Redis db number, on a free loopback port)."""
    from sqlalchemy.engine import make_url

    servers = SessionServers(database_url, redis_url)
    database = make_url(database_url)
    is_postgres = database.get_backend_name() == "postgresql"
    if is_postgres and not accepts_connections(database.host, database.port or 5432):
        postgres = PrivatePostgres(superuser=database.username or "postgres").start()
        servers.servers.append(postgres)
        servers.database_url = database.set(
            host=LOOPBACK, port=postgres.port, password=None
        ).render_as_string(hide_password=False)
        servers.started.append(
            f"Nothing answered at TEST_DATABASE_URL ({database.host}:{database.port or 5432}): "
            f"started a throwaway {postgres.description}"
        )
    parts = urlsplit(redis_url)
    if not accepts_connections(parts.hostname or LOOPBACK, parts.port or 6379):
        redis_server = PrivateRedis().start()
        servers.servers.append(redis_server)
        servers.redis_url = urlunsplit(
            (parts.scheme, f"{LOOPBACK}:{redis_server.port}", parts.path, parts.query, "")
        )
        servers.started.append(
            f"Nothing answered at TEST_REDIS_URL ({parts.hostname}:{parts.port or 6379}): "
            f"started a throwaway {redis_server.description}"
        )
    return servers


# One test run per set of databases


class DatabasesInUse(RuntimeError):
    pass


def _lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for `name` (what pg_try_advisory_lock takes)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim_databases(pairs: list[tuple[str, str]]) -> object | None:
    """Claim each (PostgreSQL database URL, Redis URL) pair for this process's lifetime.

    Two runs on the same databases (two people's `./scripts/test` with the default URLs) fail
    each other's tests at random: one truncates the other's tables, one's Celery worker takes
    the other's jobs. The claim is a session advisory lock per PostgreSQL database and per
    Redis db, held on a connection to the server's `postgres` database, so it ends with this
    process however it ends. Returns that connection (None when the database is not
    PostgreSQL or cannot be reached); raises DatabasesInUse naming what another run holds.
    """
    import psycopg2
    from sqlalchemy.engine import make_url

    server = make_url(pairs[0][0])
    if server.get_backend_name() != "postgresql":
        return None
    try:
        connection = psycopg2.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username or "postgres",
            password=server.password,
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.OperationalError:
        return None  # the tests that need the database say why; the others need no claim
    connection.autocommit = True
    busy = []
    with connection.cursor() as cursor:
        for database_url, redis_url in pairs:
            redis_parts = urlsplit(redis_url)
            redis_db = redis_parts.path.strip("/") or "0"
            for name in (
                f"PostgreSQL database {make_url(database_url).database}",
                f"Redis db {redis_parts.hostname}:{redis_parts.port or 6379}/{redis_db}",
            ):
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(name),))
                if not cursor.fetchone()[0]:
                    busy.append(name)
    if busy:
        connection.close()
        raise DatabasesInUse(
            f"another test run is using {', '.join(busy)} (claims held on PostgreSQL "
            f"{server.host}:{server.port or 5432}): give this run databases of its own with "
            "TEST_DATABASE_URL and TEST_REDIS_URL, or wait for that run to end"
        )
    return connection
