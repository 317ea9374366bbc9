"""One default system prompt per user (issue 12, 2.13): whatever the order or concurrency of
"make this the default" requests, exactly one stays default, and none answers 500. Real uvicorn
for the concurrent requests: they must run at once on the API's own thread pool."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import alembic.command as command
import httpx
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from shared.cli import alembic_config
from shared.db import make_engine
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.harness import base_env, start_api
from tests.helpers import register_and_login

CONCURRENT_REQUESTS = 10


@pytest.fixture(scope="module")
def api_url(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = base_env(DATABASE_URL=TEST_DATABASE_URL, REDIS_URL=TEST_REDIS_URL)
    process, url = start_api(env, tmp_path_factory.mktemp("api-logs"))
    yield url
    process.stop()


@pytest.fixture
def http(api_url: str, db_clean: None, redis_clean: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def _defaults(http: httpx.Client, headers: dict[str, str]) -> list[str]:
    listed = http.get("/system-prompts", params={"limit": 100}, headers=headers)
    assert listed.status_code == 200, listed.text
    return [prompt["name"] for prompt in listed.json()["data"] if prompt["is_default"]]


def _all_at_once(api_url: str, requests: list[Callable[[httpx.Client], httpx.Response]]):
    """Send the requests together, each on its own connection, released by one barrier."""
    barrier = threading.Barrier(len(requests))

    def send(request: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            barrier.wait(30)
            return request(client)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_making_another_prompt_default_leaves_exactly_one(http):
    headers = register_and_login(http)
    first = http.post(
        "/system-prompts",
        json={"name": "a", "content": "be brief", "is_default": True},
        headers=headers,
    )
    second = http.post(
        "/system-prompts",
        json={"name": "b", "content": "be kind", "is_default": True},
        headers=headers,
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert _defaults(http, headers) == ["b"]
    patched = http.patch(
        f"/system-prompts/{first.json()['id']}", json={"is_default": True}, headers=headers
    )
    assert patched.status_code == 200 and patched.json()["is_default"] is True
    assert _defaults(http, headers) == ["a"]


def test_concurrent_create_as_default_requests_leave_exactly_one_default(http, api_url):
    headers = register_and_login(http)
    names = [f"prompt {i}" for i in range(CONCURRENT_REQUESTS)]

    def create(name: str) -> Callable[[httpx.Client], httpx.Response]:
        body = {"name": name, "content": f"rules of {name}", "is_default": True}
        return lambda client: client.post("/system-prompts", json=body, headers=headers)

    responses = _all_at_once(api_url, [create(name) for name in names])
    assert [r.status_code for r in responses] == [201] * CONCURRENT_REQUESTS, [
        r.text for r in responses
    ]
    defaults = _defaults(http, headers)
    assert len(defaults) == 1 and defaults[0] in names


def test_concurrent_make_default_updates_leave_exactly_one_default(http, api_url):
    headers = register_and_login(http)
    ids = []
    for i in range(CONCURRENT_REQUESTS):
        created = http.post(
            "/system-prompts", json={"name": f"p{i}", "content": "rules"}, headers=headers
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])

    def make_default(prompt_id: str) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.patch(
            f"/system-prompts/{prompt_id}", json={"is_default": True}, headers=headers
        )

    responses = _all_at_once(api_url, [make_default(prompt_id) for prompt_id in ids])
    assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS, [
        r.text for r in responses
    ]
    assert len(_defaults(http, headers)) == 1


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A database of its own on the test server, for migrating from an older revision."""
    name = f"switchboard_default_prompt_{uuid.uuid4().hex[:12]}"
    server = make_url(TEST_DATABASE_URL)
    admin = psycopg2.connect(
        host=server.host, port=server.port or 5432, user=server.username, dbname="postgres"
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_upgrading_keeps_only_each_users_newest_default(scratch_database: str):
    command.upgrade(alembic_config(scratch_database), "0002_multi_provider")
    engine = make_engine(scratch_database, pool_size=1, max_overflow=0)
    try:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            for user in (alice, bob):
                conn.execute(
                    sa.text(
                        "insert into users (id, email, password_hash, created_at, updated_at)"
                        " values (:id, :email, 'x', now(), now())"
                    ),
                    {"id": user, "email": f"{user.hex[:8]}@example.com"},
                )
            # Alice has the duplicate defaults the old code could leave; Bob has one.
            for user, name, default, age_days in [
                (alice, "oldest", True, 3),
                (alice, "newest", True, 1),
                (alice, "middle", True, 2),
                (alice, "plain", False, 0),
                (bob, "bob's", True, 5),
            ]:
                conn.execute(
                    sa.text(
                        "insert into system_prompts"
                        " (id, user_id, name, content, is_default, created_at, updated_at)"
                        " values (:id, :user, :name, 'rules', :default,"
                        " now() - make_interval(days => :age), now())"
                    ),
                    {
                        "id": uuid.uuid4(),
                        "user": user,
                        "name": name,
                        "default": default,
                        "age": age_days,
                    },
                )
        engine.dispose()

        command.upgrade(alembic_config(scratch_database), "head")
        with engine.connect() as conn:
            defaults = conn.execute(
                sa.text(
                    "select users.id, name from system_prompts join users"
                    " on users.id = user_id where is_default order by name"
                )
            ).all()
            assert sorted((str(user), name) for user, name in defaults) == sorted(
                [(str(bob), "bob's"), (str(alice), "newest")]
            )
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    sa.text("update system_prompts set is_default = true where name = 'plain'")
                )
    finally:
        engine.dispose()
