"""Domain errors that carry their HTTP status; `api/errors.py` renders them as JSON."""

from __future__ import annotations


class AppError(Exception):
    status_code: int = 500

    def __init__(
        self, message: str, status_code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401

    def __init__(self, message: str = "Not authenticated") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ServiceUnavailable(AppError):
    status_code = 503
