"""The compatible APIs answer their errors in their own wire format (OpenAI's, Anthropic's),
body validation and authentication included, without changing the native API's shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.routing import APIRoute

ErrorMapper = Callable[[Exception], Response | None]


def error_mapping_route(to_response: ErrorMapper) -> type[APIRoute]:
    """A route class whose handler answers the errors `to_response` knows (None: the app's own
    handlers answer it, a logged 500 for a bug)."""

    class ErrorMappingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    response = to_response(exc)
                    if response is None:
                        raise
                    return response

            return handle

    return ErrorMappingRoute
