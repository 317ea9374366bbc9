"""`GET /metrics` for Prometheus: admins only (an admin's access token or `sb_` API key).

The metrics show every provider's traffic and cost, so they are not public. Workers serve
their own metrics on WORKER_METRICS_PORT (shared/metrics.py); docs/admin.md lists them all.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AuthDep
from api.schemas.common import ErrorOut
from api.schemas.responses import AUTHENTICATED
from shared import metrics
from shared.errors import AppError
from shared.models import User

router = APIRouter(tags=["metrics"])

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A path no route matched (a scan, a typo): one label, not one per path.
UNMATCHED_ROUTE = "unmatched"


def _require_admin(_session: Session, user: User) -> None:
    if not user.is_admin:
        raise AppError("Only administrators may read the metrics", status_code=403)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        403: {"model": ErrorOut, "description": "The caller is not an administrator"},
    }
    | AUTHENTICATED,
)
async def read_metrics(auth: AuthDep) -> Response:
    """Every API metric and the depth of each provider queue, in Prometheus' text format."""
    await auth.run(_require_admin)
    # The queue-depth collector asks Redis synchronously: off the event loop.
    body = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware:
    """Counts requests by method, route template and status, and times them until the
    response headers are sent (an SSE stream's lifetime would say nothing about latency)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            # The router puts the matched route in the scope it shares with us.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_REQUEST_DURATION.labels(method, route).observe(
                time.perf_counter() - started
            )

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            record(500)  # nothing inside answered; the server answers 500
            raise


def install_metrics(app: FastAPI) -> None:
    """Count the app's requests and report its provider queues' depth."""
    app.add_middleware(HttpMetricsMiddleware)
    metrics.register_queue_depth(metrics.provider_queue_names, metrics.broker_client)
