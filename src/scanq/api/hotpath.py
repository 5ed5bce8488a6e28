"""A short cut past routing for the busiest fixed routes (``POST /scans``, ``POST /scans/batch``).

Starlette's layers (CORS, the exception middleware, the router's linear match,
the per-route request/response wrappers) cost about as much per request as
uvicorn itself; on one core that halves the submissions per second an ingest
process answers. This middleware sits just inside the metrics middleware and
answers an exact ``(method, path)`` match itself: same endpoint function,
same ``Request``, same exception handlers, so every answer is byte for byte
what the full stack would send. Anything else, and any request with an
``Origin`` header (CORS must add its headers), goes down the normal stack.

An exception no handler maps (a bug) is re-raised, so Starlette's
``ServerErrorMiddleware`` answers 500 and uvicorn logs it, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

ORIGIN_HEADER = b"origin"

HttpExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def _has_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:  # a loop, not any(): no generator on every request
        if name == ORIGIN_HEADER:
            return True
    return False


class HotPathMiddleware:
    """Serve ``routes`` (exact method and path) without the routing stack.

    Args:
        app: the rest of the stack.
        routes: the Starlette routes to serve directly (fixed paths, one method each).
        handlers: exception class → handler, as registered on the app; ``Exception`` itself is left to Starlette.
    """

    def __init__(self, app: ASGIApp, *, routes: Iterable[Route], handlers: Mapping[object, ExceptionHandler]) -> None:
        self.app = app
        self._routes: dict[tuple[str, str], Route] = {}
        for route in routes:
            for method in route.methods or ():
                if method != "HEAD":
                    self._routes[(method, route.path)] = route
        # errors.py registers async HTTP handlers only (no websocket routes, no sync handlers).
        self._handlers = {
            cls: cast(HttpExceptionHandler, handler) for cls, handler in handlers.items() if cls is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._routes.get((scope["method"], scope["path"]))
        if route is None or _has_origin(scope["headers"]):
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # what the router would set: the metrics label reads it
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> HttpExceptionHandler | None:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None
