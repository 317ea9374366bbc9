"""Error responses routes document in OpenAPI (`responses=`), so clients and contract tests
(schemathesis) know every status a route can answer. 422 is documented app-wide (api/main.py).

Each is a dict to merge: `responses=UNAUTHORIZED | NOT_FOUND`.
"""

from __future__ import annotations

from typing import Any

from api.schemas.common import ErrorOut

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Every route that reads a credential or the database (api/deps.py, api/errors.py).
UNAUTHORIZED: Responses = {401: _error("Missing, invalid or expired credentials")}
DATABASE_UNAVAILABLE: Responses = {
    503: _error("The database is unavailable or busy; retry after Retry-After seconds")
}
# Every route with a body: bytes that are not UTF-8 JSON, and bodies over
# MAX_REQUEST_BODY_BYTES (api/limits.py).
BODY_ERRORS: Responses = {
    400: _error("The body cannot be decoded"),
    413: _error("The body exceeds MAX_REQUEST_BODY_BYTES"),
}

AUTHENTICATED: Responses = UNAUTHORIZED | DATABASE_UNAVAILABLE


def not_found(what: str) -> Responses:
    return {404: _error(f"No such {what} (or it belongs to someone else)")}


def conflict(description: str) -> Responses:
    return {409: _error(description)}
