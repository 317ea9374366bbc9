from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Chat, Message, SystemPrompt
from tests.helpers import register_and_login


def test_chat_crud(client):
    headers = register_and_login(client)
    created = client.post("/chats", json={"title": "First"}, headers=headers)
    assert created.status_code == 201
    chat = created.json()
    assert chat["provider_name"] == "echo"  # DEFAULT_PROVIDER in the test settings
    assert chat["model_name"] == "echo-1"

    assert client.get(f"/chats/{chat['id']}", headers=headers).json()["title"] == "First"
    patched = client.patch(
        f"/chats/{chat['id']}",
        json={"title": "Renamed", "provider": "openai", "model": "gpt-4"},
        headers=headers,
    )
    assert patched.status_code == 200
    assert (
        patched.json()["title"],
        patched.json()["provider_name"],
        patched.json()["model_name"],
    ) == (
        "Renamed",
        "openai",
        "gpt-4",
    )
    assert client.delete(f"/chats/{chat['id']}", headers=headers).status_code == 204
    assert client.get(f"/chats/{chat['id']}", headers=headers).status_code == 404


def test_chat_with_provider_and_default_model(client):
    headers = register_and_login(client)
    chat = client.post("/chats", json={"provider": "anthropic"}, headers=headers).json()
    assert chat["provider_name"] == "anthropic"
    assert chat["model_name"] == "claude-3-sonnet-20240229"


def test_invalid_provider_or_model_names_the_choices_and_stores_nothing(client):
    headers = register_and_login(client)
    unknown = client.post("/chats", json={"provider": "nope"}, headers=headers)
    assert unknown.status_code == 422
    assert "echo" in unknown.json()["detail"] and "openai" in unknown.json()["detail"]
    bad_model = client.post(
        "/chats", json={"provider": "openai", "model": "gpt-9"}, headers=headers
    )
    assert bad_model.status_code == 422
    assert "gpt-4" in bad_model.json()["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Chat)) == 0


def test_pagination_newest_first(client):
    headers = register_and_login(client)
    for index in range(5):
        client.post("/chats", json={"title": f"chat {index}"}, headers=headers)
    page = client.get("/chats?limit=2&offset=0", headers=headers).json()
    assert page["count"] == 5
    assert [c["title"] for c in page["data"]] == ["chat 4", "chat 3"]
    rest = client.get("/chats?limit=2&offset=4", headers=headers).json()
    assert [c["title"] for c in rest["data"]] == ["chat 0"]
    assert client.get("/chats?limit=0", headers=headers).status_code == 422
    assert client.get("/chats?limit=abc", headers=headers).status_code == 422
    assert client.get(f"/chats?offset={10**20}", headers=headers).status_code == 422


def test_chats_list_most_recent_activity_first(client):
    headers = register_and_login(client)
    ids = {}
    for title in ("oldest", "middle", "newest"):
        ids[title] = client.post("/chats", json={"title": title}, headers=headers).json()["id"]

    def titles() -> list[str]:
        return [c["title"] for c in client.get("/chats", headers=headers).json()["data"]]

    assert titles() == ["newest", "middle", "oldest"]
    # A message sent to the oldest chat brings it to the top.
    sent = client.post(
        f"/chats/{ids['oldest']}/messages", json={"message": "back again"}, headers=headers
    )
    assert sent.status_code == 202, sent.text
    assert titles() == ["oldest", "newest", "middle"]
    # So does a rename (any change to the chat is activity).
    renamed = client.patch(f"/chats/{ids['middle']}", json={"title": "renamed"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert titles() == ["renamed", "oldest", "newest"]
    listed = client.get("/chats", headers=headers).json()["data"]
    stamps = [c["updated_at"] for c in listed]
    assert stamps == sorted(stamps, reverse=True)
    # Pages follow the same order.
    second = client.get("/chats?limit=1&offset=1", headers=headers).json()["data"]
    assert [c["title"] for c in second] == ["oldest"]


def test_users_only_see_their_own_rows(client):
    alice = register_and_login(client)
    bob = register_and_login(client)
    chat = client.post("/chats", json={"title": "private"}, headers=alice).json()
    prompt = client.post(
        "/system-prompts", json={"name": "p", "content": "be brief"}, headers=alice
    ).json()

    for method, url in [
        ("get", f"/chats/{chat['id']}"),
        ("patch", f"/chats/{chat['id']}"),
        ("delete", f"/chats/{chat['id']}"),
        ("get", f"/chats/{chat['id']}/messages"),
        ("get", f"/system-prompts/{prompt['id']}"),
        ("delete", f"/system-prompts/{prompt['id']}"),
    ]:
        kwargs = {"json": {"title": "stolen"}} if method == "patch" else {}
        response = getattr(client, method)(url, headers=bob, **kwargs)
        assert response.status_code == 404, (method, url)
        assert "private" not in response.text
    assert client.get("/chats", headers=bob).json() == {"data": [], "count": 0}
    # Bob cannot attach Alice's system prompt either.
    attach = client.post("/chats", json={"system_prompt_id": prompt["id"]}, headers=bob)
    assert attach.status_code == 404
    assert client.get(f"/chats/{chat['id']}", headers=alice).json()["title"] == "private"


def test_system_prompt_crud_and_single_default(client):
    headers = register_and_login(client)
    first = client.post(
        "/system-prompts", json={"name": "a", "content": "one", "is_default": True}, headers=headers
    ).json()
    second = client.post(
        "/system-prompts", json={"name": "b", "content": "two", "is_default": True}, headers=headers
    ).json()
    listed = client.get("/system-prompts", headers=headers).json()
    assert listed["count"] == 2
    defaults = {p["id"]: p["is_default"] for p in listed["data"]}
    assert defaults == {first["id"]: False, second["id"]: True}

    updated = client.patch(
        f"/system-prompts/{first['id']}", json={"content": "uno"}, headers=headers
    )
    assert updated.json()["content"] == "uno"
    chat = client.post("/chats", json={"system_prompt_id": first["id"]}, headers=headers).json()
    assert chat["system_prompt_id"] == first["id"]
    assert client.delete(f"/system-prompts/{first['id']}", headers=headers).status_code == 204
    assert client.get(f"/chats/{chat['id']}", headers=headers).json()["system_prompt_id"] is None


def test_chat_messages_listing(client):
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    with session_scope() as session:
        session.add(Message(chat_id=uuid.UUID(chat["id"]), role="user", content="hi"))
    listed = client.get(f"/chats/{chat['id']}/messages", headers=headers).json()
    assert listed["count"] == 1
    assert listed["data"][0]["content"] == "hi"
    assert listed["data"][0]["usage"] is None


def test_deleting_a_chat_deletes_its_messages(client):
    headers = register_and_login(client)
    chat = client.post("/chats", json={}, headers=headers).json()
    with session_scope() as session:
        session.add(Message(chat_id=uuid.UUID(chat["id"]), role="user", content="hi"))
        session.add(
            SystemPrompt(user_id=session.scalar(select(Chat.user_id)), name="n", content="c")
        )
    client.delete(f"/chats/{chat['id']}", headers=headers)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
