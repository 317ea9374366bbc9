"""PUT /messages/{id}/rating: a user's thumbs up or down on their own replies."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from shared.db import session_scope
from shared.models import Message, ReplyStatus
from shared.models.base import utcnow
from tests.helpers import register_and_login


def _reply(client, headers: dict[str, str]) -> dict:
    """A submitted message's ids; no worker runs here, so the reply is finished by hand."""
    chat = client.post("/chats", json={}, headers=headers).json()
    accepted = client.post(
        f"/chats/{chat['id']}/messages", json={"message": "hello"}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    with session_scope() as session:
        session.execute(
            update(Message)
            .where(Message.id == uuid.UUID(body["reply_id"]))
            .values(status=ReplyStatus.completed, content="hi there", completed_at=utcnow())
        )
    return dict(body)


def _rate(client, headers: dict[str, str], message_id: str, rating: object):
    return client.put(f"/messages/{message_id}/rating", json={"rating": rating}, headers=headers)


def test_rating_is_set_changed_and_cleared(client):
    headers = register_and_login(client)
    reply_id = _reply(client, headers)["reply_id"]
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] is None

    up = _rate(client, headers, reply_id, 1)
    assert up.status_code == 200, up.text
    assert (up.json()["id"], up.json()["rating"], up.json()["content"]) == (reply_id, 1, "hi there")
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] == 1

    assert _rate(client, headers, reply_id, 1).json()["rating"] == 1  # the same again: no-op
    assert _rate(client, headers, reply_id, -1).json()["rating"] == -1
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] == -1

    cleared = _rate(client, headers, reply_id, None)
    assert cleared.status_code == 200
    assert cleared.json()["rating"] is None
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] is None


def test_rating_shows_in_the_chat_history(client):
    headers = register_and_login(client)
    accepted = _reply(client, headers)
    assert _rate(client, headers, accepted["reply_id"], -1).status_code == 200
    chat_id = client.get(f"/messages/{accepted['reply_id']}", headers=headers).json()["chat_id"]
    history = client.get(f"/chats/{chat_id}/messages", headers=headers).json()["data"]
    ratings = {message["id"]: message["rating"] for message in history}
    assert ratings == {accepted["message_id"]: None, accepted["reply_id"]: -1}


def test_another_users_reply_or_an_unknown_id_is_not_found(client):
    owner = register_and_login(client)
    stranger = register_and_login(client)
    reply_id = _reply(client, owner)["reply_id"]

    for message_id in (reply_id, str(uuid.uuid4())):
        response = _rate(client, stranger, message_id, 1)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "MessageNotFound"
    # The stranger's attempt left the owner's reply unrated.
    assert client.get(f"/messages/{reply_id}", headers=owner).json()["rating"] is None


def test_a_user_message_cannot_be_rated(client):
    headers = register_and_login(client)
    message_id = _reply(client, headers)["message_id"]
    response = _rate(client, headers, message_id, 1)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "NotRateable"
    assert "user message" in response.json()["detail"]
    assert client.get(f"/messages/{message_id}", headers=headers).json()["rating"] is None


def test_bad_ratings_are_refused_with_422(client):
    headers = register_and_login(client)
    reply_id = _reply(client, headers)["reply_id"]
    for rating in (0, 2, -2, 1.5, True, False, "1", "up", [1], {"value": 1}):
        response = _rate(client, headers, reply_id, rating)
        assert response.status_code == 422, (rating, response.text)
    for body in ({}, {"rating": 1, "extra": True}):
        response = client.put(f"/messages/{reply_id}/rating", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
    not_json = client.put(
        f"/messages/{reply_id}/rating",
        content=b"\xff",
        headers=headers | {"Content-Type": "application/json"},
    )
    assert not_json.status_code == 400, not_json.text
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] is None


def test_rating_needs_credentials(client):
    headers = register_and_login(client)
    reply_id = _reply(client, headers)["reply_id"]
    assert _rate(client, {}, reply_id, 1).status_code == 401
    assert _rate(client, {"Authorization": "Bearer nope"}, reply_id, 1).status_code == 401
    assert client.get(f"/messages/{reply_id}", headers=headers).json()["rating"] is None


def test_every_status_the_route_answers_is_documented(client):
    operation = client.get("/openapi.json").json()["paths"]["/messages/{message_id}/rating"]["put"]
    assert {"200", "400", "401", "404", "409", "413", "422", "503"} <= set(operation["responses"])
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RatingIn"]
    assert schema["required"] == ["rating"] and schema["additionalProperties"] is False
