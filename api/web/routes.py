"""Routes of the page: `/` (chat), `/admin` (admin pages) and `/static/...` (assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from api.web.security import SecurityHeadersMiddleware

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The HTML must be revalidated on every load (a new release changes which modules it asks for);
# the assets are revalidated too, cheaply, by ETag: no stale module after an upgrade.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)


@router.api_route("/admin", methods=["GET", "HEAD"])
async def admin_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "admin.html", headers=NO_CACHE)


class _RevalidatedStaticFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_CACHE)
        return response


def install_web(app: FastAPI) -> None:
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(router)
    app.mount("/static", _RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
