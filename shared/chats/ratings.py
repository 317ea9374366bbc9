"""A user's thumbs up or down on a reply: what the A/B analytics count as user ratings."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.chats.submission import submission_service
from shared.chats.views import MessageView, message_views
from shared.errors import Conflict
from shared.models import Message, User

Rating = Literal[1, -1]


class NotRateable(Conflict):
    pass


class RatingService:
    def rate(
        self, session: Session, user: User, message_id: uuid.UUID, rating: Rating | None
    ) -> MessageView:
        """Sets (or, with None, clears) the rating; the same value twice is a no-op.

        Ownership as for cancel: another user's message or an unknown id is 404. A reply of
        any status may be rated (a failed one deserves its thumbs down too).
        """
        message = submission_service.get_reply(session, user, message_id)
        if message.role != "assistant":
            raise NotRateable("Only assistant replies can be rated; this is a user message")
        # One column, by id: a worker finishing this reply meanwhile writes other columns, so
        # neither update undoes the other.
        session.execute(update(Message).where(Message.id == message.id).values(rating=rating))
        session.refresh(message)
        return message_views(session, [message])[0]


rating_service = RatingService()
