"""The README quick start: `switchboard dev` on embedded defaults gives a streamed reply."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt

from tests.e2e.harness import base_env, free_port, iter_sse, wait_until
from tests.helpers import register_and_login
from tests.test_secrets import PUBLISHED_KEY

REPO = Path(__file__).resolve().parents[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _start_dev(tmp_path: Path, api_port: int, flower_port: int) -> subprocess.Popen[bytes]:
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: embed one
    )
    env.pop("DEFAULT_PROVIDER", None)
    env.pop("SECRET_KEY", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "dev",
            "--port",
            str(api_port),
            "--flower-port",
            str(flower_port),
            "--embedded-redis",
            "fakeredis",
        ],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop_dev(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode == 0, output[-3000:]
    assert "[dev] stopped" in output
    return output


def test_dev_command_streams_an_echo_reply_and_stops_cleanly(tmp_path):
    api_port, flower_port = free_port(), free_port()
    process = _start_dev(tmp_path, api_port, flower_port)
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(
            lambda: _answers(base + "/healthz") and _answers(f"http://127.0.0.1:{flower_port}/"), 60
        )
        with httpx.Client(base_url=base, timeout=30) as client:
            headers = register_and_login(client)
            chat = client.post("/chats", json={"title": "hello"}, headers=headers).json()
            assert chat["provider_name"] == "echo"  # the quick start's default provider
            accepted = client.post(
                f"/chats/{chat['id']}/messages",
                json={"message": "Hello, Switchboard!"},
                headers=headers,
            )
            assert accepted.status_code == 202
            with client.stream("GET", accepted.json()["stream_url"], headers=headers) as stream:
                events = list(iter_sse(stream.iter_lines()))
        assert events[-1].event == "done"
        assert "".join(e.data["delta"] for e in events if e.event == "token") == (
            "Echo: Hello, Switchboard!"
        )
        assert (tmp_path / "dev.db").exists()
    finally:
        output = _stop_dev(process)
    assert not _answers(base + "/healthz")
    assert "sk-test" not in output and os.environ["OPENAI_API_KEY"] not in output


def test_dev_keeps_its_own_secret_key_so_logins_survive_a_restart(tmp_path):
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    process = _start_dev(tmp_path, api_port, 0)
    try:
        wait_until(lambda: _answers(base + "/healthz"), 60)
        with httpx.Client(base_url=base, timeout=30) as client:
            headers = register_and_login(client)
            user_id = client.get("/users/me", headers=headers).json()["id"]
            forged = jwt.encode(
                {"sub": user_id, "exp": datetime.now(UTC) + timedelta(hours=1)},
                PUBLISHED_KEY,
                algorithm="HS256",
            )
            assert (
                client.get("/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code
                == 401
            )
    finally:
        first_output = _stop_dev(process)
    key_file = tmp_path / ".switchboard-secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 32 and key not in first_output

    process = _start_dev(tmp_path, api_port, 0)
    try:
        wait_until(lambda: _answers(base + "/healthz"), 60)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/users/me", headers=headers).json()["id"] == user_id
    finally:
        second_output = _stop_dev(process)
    assert key_file.read_text().strip() == key and key not in second_output
