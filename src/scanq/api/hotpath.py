"""The busiest routes answered before Starlette: a raw ASGI entry.

Ingest's ``POST /scans`` and ``POST /scans/batch``; status's reads by id,
``GET /scans/{scan_id}`` and ``GET /{scan_id}`` (only a path whose id is a
scan id: any other goes to the router, which answers it as before).

On one core, what sits between uvicorn and the handler costs about as much per
request as the handler itself: ``Starlette.__call__``, its error middleware
(a ``send`` wrapper), the metrics middleware (a closure and another ``send``
wrapper), the cross-site guard (a pass over the headers), the router, a
``Request``, a ``Response``. ``HotApp`` is the Starlette app with one check in
front: a request whose exact ``(method, path)`` is a hot route, or a ``GET``
of a read's prefix and a scan id, goes to ``HotEntry.serve``, which does their
work itself in one frame:

- one pass over the headers reads what the cross-site rules, the caller, the
  body and the idempotency key need; a request with an ``Origin`` header
  leaves at once for the full stack (CORS must add its headers);
- the cross-site rules are ``crosssite.CrossSiteRules``, the guard's own: a
  refusal is its answer, counted under the ``unmatched`` route as before;
- ``POST /scans`` calls ``IngestEndpoints.submit_raw`` and sends its status,
  headers and body as the two ASGI messages ``Response.__call__`` would send;
  a read by id calls ``StatusEndpoints.get_scan_raw`` with the id and sends
  its answer the same way; other hot routes call their endpoint with a
  ``Request``, as the router would;
- an error is answered by the app's exception handlers, with the same
  ``Request``-based handlers, so every refusal is byte for byte what the full
  stack sends; an error no handler maps (a bug) is answered 500 by the
  ``Exception`` handler when nothing was sent yet and re-raised, as
  Starlette's ``ServerErrorMiddleware`` does, so uvicorn logs it;
- the request's latency goes to ``HttpMetrics`` (folded: a bucket count).

``tests/integration/test_hotpath.py`` sends every kind of request both ways
(with and without ``Origin``) and compares the answers;
``tests/unit/test_hotpath_entry.py`` pins the Starlette behaviour copied here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ExceptionHandler, Receive, Scope, Send

from scanq.api.crosssite import CrossSiteRules
from scanq.api.errors import error_response
from scanq.api.metrics import UNMATCHED_ROUTE, HttpMetrics
from scanq.ids import is_scan_id

HttpExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
RawAnswer = tuple[int, list[tuple[bytes, bytes]], bytes]
# (receive, Authorization, Content-Length, Idempotency-Key): the first of each header, as Request.headers reads it.
RawHandler = Callable[[Receive, bytes | None, bytes | None, bytes | None], Awaitable[RawAnswer]]
# (scan id, Authorization): a GET of one scan.
ReadHandler = Callable[[str, bytes | None], Awaitable[RawAnswer]]
SCAN_ID_LENGTH = 36


class Lane:
    """One hot route: its path template (the metrics label), and a raw handler, a read by id or a routed endpoint.

    A read's path is ``prefix`` and the scan id (the template up to ``{scan_id}``).
    """

    __slots__ = ("endpoint", "prefix", "raw", "read", "route", "template")

    def __init__(self, route: Route, raw: RawHandler | None = None, read: ReadHandler | None = None) -> None:
        self.route = route
        self.template = route.path
        self.endpoint = cast(Callable[[Request], Awaitable[Response]], route.endpoint)
        self.raw = raw
        self.read = read
        self.prefix = route.path.partition("{")[0]


class HotEntry:
    """Serve the hot routes past Starlette (see the module docstring).

    Args:
        rules: the cross-site rules (the ``CrossSiteGuard``'s).
        metrics: where each request's latency goes.
        handlers: exception class → handler, as registered on the app; ``Exception``'s answers bugs.
    """

    def __init__(
        self, *, rules: CrossSiteRules, metrics: HttpMetrics, handlers: Mapping[object, ExceptionHandler]
    ) -> None:
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.reads: list[Lane] = []  # GET prefix + scan id, the longest prefix first
        self._rules = rules
        self._metrics = metrics
        # errors.py registers async HTTP handlers only (no websocket routes, no sync handlers).
        self._handlers = {
            cls: cast(HttpExceptionHandler, handler) for cls, handler in handlers.items() if cls is not Exception
        }
        self._unexpected = cast(HttpExceptionHandler, handlers[Exception])

    def add(self, routes: Iterable[Route], *, raw: Mapping[tuple[str, str], RawHandler] | None = None) -> None:
        """Serve ``routes`` (fixed paths; HEAD left to the router), with ``raw`` handlers where given."""
        for route in routes:
            for method in route.methods or ():
                if method != "HEAD":
                    key = (method, route.path)
                    self.lanes[key] = Lane(route, (raw or {}).get(key))

    def add_reads(self, routes: Iterable[Route], read: ReadHandler) -> None:
        """Serve ``GET`` of each of ``routes`` (``…/{scan_id}`` templates) with ``read``, for paths with a scan id."""
        for route in routes:
            self.reads.append(Lane(route, read=read))
        self.reads.sort(key=lambda lane: len(lane.prefix), reverse=True)

    def read_lane(self, path: str) -> Lane | None:
        """The read whose prefix ``path`` starts with, when the rest is a scan id (no fixed route looks like one)."""
        if len(path) <= SCAN_ID_LENGTH:
            return None
        for lane in self.reads:
            prefix = lane.prefix
            if len(path) == len(prefix) + SCAN_ID_LENGTH and path.startswith(prefix):
                return lane if is_scan_id(path[len(prefix) :]) else None
        return None

    async def serve(self, lane: Lane, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request; False (nothing read or sent) when it carries an ``Origin`` header."""
        started = time.perf_counter()
        host = fetch_site = content_type = content_length = first_length = authorization = idempotency_key = None
        is_chunked = has_fetch_metadata = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value  # the cross-site rules read the last one, the body the first
                if first_length is None:
                    first_length = value
            elif name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"idempotency-key":
                if idempotency_key is None:
                    idempotency_key = value
            elif name == b"origin":
                return False
            elif name == b"transfer-encoding":
                is_chunked = True
            elif name.startswith(b"sec-fetch-"):
                has_fetch_metadata = True
                if name == b"sec-fetch-site":
                    fetch_site = value
        method: str = scope["method"]
        refusal = self._rules.refusal(
            method,
            scope["path"],
            scope["scheme"],
            host,
            None,
            fetch_site,
            content_type,
            content_length,
            is_chunked,
            has_fetch_metadata,
        )
        route = lane.template
        code = 500  # what the client gets when the app raises before answering
        is_started = False
        try:
            if refusal is not None:
                route = UNMATCHED_ROUTE  # refused before routing, as by the guard
                code, error_code, message = refusal
                is_started = True
                await error_response(code, error_code, message)(scope, receive, send)
                return True
            raw = lane.raw
            read = lane.read
            response: Response | None = None
            request: Request | None = None
            try:
                if raw is not None:
                    code, headers, body = await raw(receive, authorization, first_length, idempotency_key)
                elif read is not None:
                    code, headers, body = await read(scope["path"][len(lane.prefix) :], authorization)
                else:
                    scope["route"] = lane.route  # what the router would set
                    scope["path_params"] = {}
                    request = Request(scope, receive, send)
                    response = await lane.endpoint(request)
            except Exception as exc:
                handler = self._handler_for(exc)
                if handler is None:
                    raise
                response = await handler(request or Request(scope, receive, send), exc)
            is_started = True
            if response is not None:
                code = response.status_code
                await response(scope, receive, send)
            else:
                await send({"type": "http.response.start", "status": code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
        except Exception as exc:
            if not is_started:
                code = 500
                await (await self._unexpected(Request(scope), exc))(scope, receive, send)
            raise
        finally:
            self._metrics.observe(method=method, route=route, code=code, seconds=time.perf_counter() - started)
        return True

    def _handler_for(self, exc: Exception) -> HttpExceptionHandler | None:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None


class HotApp(Starlette):
    """A Starlette app whose hot routes (``hot``, set once the app is built) are served before its stack."""

    hot: HotEntry | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot
        if hot is not None and scope["type"] == "http":
            lane = hot.lanes.get((scope["method"], scope["path"]))
            if lane is None and hot.reads and scope["method"] == "GET":
                lane = hot.read_lane(scope["path"])
            if lane is not None:
                scope["app"] = self  # as Starlette.__call__ sets it
                if await hot.serve(lane, scope, receive, send):
                    return
        await super().__call__(scope, receive, send)


__all__ = ["HotApp", "HotEntry", "Lane", "RawHandler", "ReadHandler"]
