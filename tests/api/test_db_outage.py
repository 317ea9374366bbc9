"""PostgreSQL going away under a running API (uvicorn, through a proxy the test cuts).

While the database is unreachable the API answers 503 with Retry-After on the same keep-alive
connection, and once it is back the API answers again by itself, including the first request
after a restart that killed every pooled connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.live import TcpProxy, connection_port, live_api, one_connection_client, proxy_to, via
from tests.conftest import TEST_DATABASE_URL
from tests.helpers import register_and_login


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    with proxy_to(TEST_DATABASE_URL) as proxy:
        yield proxy


@pytest.fixture
def http(
    database: str, db_clean: None, redis_clean: None, postgres_proxy: TcpProxy, tmp_path: Path
) -> Iterator[httpx.Client]:
    with (
        live_api(tmp_path, DATABASE_URL=via(TEST_DATABASE_URL, postgres_proxy)) as url,
        one_connection_client(url) as client,
    ):
        yield client


def _chat(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    response = http.post("/chats", json={"title": "kept"}, headers=headers)
    assert response.status_code == 201, response.text
    return response


def test_database_outage_is_503_on_the_same_connection_and_recovers(http, postgres_proxy):
    headers = register_and_login(http)
    created = _chat(http, headers)
    chat_url = f"/chats/{created.json()['id']}"
    connection = connection_port(created)

    postgres_proxy.cut()
    for method, path, body in [
        ("GET", chat_url, None),
        ("GET", "/chats", None),
        ("POST", f"{chat_url}/messages", {"message": "while down"}),
    ]:
        down = http.request(method, path, json=body, headers=headers)
        assert down.status_code == 503, (path, down.text)
        assert down.json()["error"] == "DatabaseUnavailable"
        assert int(down.headers["Retry-After"]) > 0
        assert connection_port(down) == connection, "the 503 closed the connection"

    postgres_proxy.restore()
    back = http.get(chat_url, headers=headers)
    assert back.status_code == 200, back.text
    assert back.json()["title"] == "kept"
    assert connection_port(back) == connection


def test_a_database_restart_between_requests_fails_no_request(http, postgres_proxy):
    headers = register_and_login(http)
    created = _chat(http, headers)
    # Every pooled connection dies, the server is back before the next request.
    postgres_proxy.cut()
    postgres_proxy.restore()

    after = http.get(f"/chats/{created.json()['id']}", headers=headers)
    assert after.status_code == 200, after.text
    listed = http.get("/chats", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert connection_port(after) == connection_port(created)
