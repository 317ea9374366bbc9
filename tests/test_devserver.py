"""The README quick start: `switchboard dev` on embedded defaults gives a streamed reply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.harness import base_env, free_port, iter_sse, wait_until
from tests.helpers import register_and_login

REPO = Path(__file__).resolve().parents[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_dev_command_streams_an_echo_reply_and_stops_cleanly(tmp_path):
    api_port, flower_port = free_port(), free_port()
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: embed one
    )
    env.pop("DEFAULT_PROVIDER", None)
    process = subprocess.Popen(
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
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode == 0, output[-3000:]
    assert "[dev] stopped" in output
    assert not _answers(base + "/healthz")
    assert "sk-test" not in output and os.environ["OPENAI_API_KEY"] not in output
