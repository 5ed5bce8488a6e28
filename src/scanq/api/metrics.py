"""The HTTP side of the metrics: request latency by route template, and the ``GET /metrics`` endpoint.

- ``HttpMetrics`` + ``HttpMetricsMiddleware`` (ingest and status): request
  latency by method, route template and status code, from a pure ASGI
  middleware (no ``BaseHTTPMiddleware``: it would cost a task per request).
- ``metrics_endpoint`` serves a process's registry, refreshing the cached
  queue stats (``scanq.metrics.QueueStatsCollector``) first.

Kept apart from ``scanq.metrics`` because it needs Starlette, which a worker
process never loads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scanq.metrics import PREFIX, QueueStatsCollector

HTTP_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"


class HttpMetrics:
    """Request latency by method, route template and status code.

    Label values are bounded: the route is the matched route's path template
    (``/scans/{scan_id}``, never the raw path) or ``unmatched``, and unusual
    methods are folded into ``OTHER``.

    Args:
        registry: where the histogram is registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency in seconds, by method, route template and status code",
            ["method", "route", "code"],
            buckets=HTTP_SECONDS_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, *, method: str, route: str, code: int, seconds: float) -> None:
        """Record one request."""
        if method not in HTTP_METHODS:
            method = OTHER_METHOD
        key = (method, route, code)
        child = self._children.get(key)
        if child is None:
            child = self.duration.labels(method=method, route=route, code=str(code))
            self._children[key] = child
        child.observe(seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route Starlette matched (it stores the route in ``scope["route"]``)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request into ``HttpMetrics``.

    Args:
        app: the wrapped application.
        metrics: where requests are recorded.
    """

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500  # what the server answers when the app raises before starting a response

        async def send_and_note_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.observe(
                method=scope["method"],
                route=route_template(scope),
                code=code,
                seconds=time.perf_counter() - started,
            )


def metrics_endpoint(
    registry: CollectorRegistry, *, queue: QueueStatsCollector | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` endpoint for ``registry`` (the queue stats are refreshed first when given).

    Args:
        registry: what to expose.
        queue: the cached store stats registered in ``registry``, if any.
    """

    async def metrics(request: Request) -> Response:
        if queue is not None:
            await queue.refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


__all__ = [
    "HttpMetrics",
    "HttpMetricsMiddleware",
    "metrics_endpoint",
    "route_template",
]
