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

import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scanq.metrics import PREFIX, QueueStatsCollector

HTTP_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"


class FoldedHistogram(Histogram):
    """A histogram that runs ``fold`` (set by its owner) before every read, to add what is pending first."""

    fold: Callable[[], None] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.fold is not None:
            self.fold()
        return super().collect()


class _Pending:
    """One label set's observations since the last read: counts per bucket and their sum."""

    __slots__ = ("child", "counts", "total")

    def __init__(self, child: Histogram, buckets: int) -> None:
        self.child = child
        self.counts = [0] * buckets
        self.total = 0.0


class HttpMetrics:
    """Request latency by method, route template and status code.

    Label values are bounded: the route is the matched route's path template
    (``/scans/{scan_id}``, never the raw path) or ``unmatched``, and unusual
    methods are folded into ``OTHER``.

    A request adds one to its bucket's pending count (``bisect`` over the bounds) and its time to a
    pending sum; ``fold`` adds those to the histogram, and runs before every read of it (``collect``:
    every scrape), so what ``/metrics`` shows is always exact. ``Histogram.observe`` instead walks the
    buckets in Python and takes a lock twice: about 2 µs per request on the ingest hot path. The fold
    writes the child's bucket and sum values directly (prometheus-client internals, pinned by
    ``tests/unit/test_metrics.py``). Observations and reads both run on the process's event loop.

    Args:
        registry: where the histogram is registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = FoldedHistogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency in seconds, by method, route template and status code",
            ["method", "route", "code"],
            buckets=HTTP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.duration.fold = self.fold
        self._bounds = (*HTTP_SECONDS_BUCKETS, math.inf)  # the histogram's own upper bounds, +Inf last
        self._pending: dict[tuple[str, str, int], _Pending] = {}

    def observe(self, *, method: str, route: str, code: int, seconds: float) -> None:
        """Record one request."""
        if method not in HTTP_METHODS:
            method = OTHER_METHOD
        key = (method, route, code)
        pending = self._pending.get(key)
        if pending is None:
            # The child now, as Histogram.observe would make it: its series (and _created) start here.
            child = self.duration.labels(method=method, route=route, code=str(code))
            pending = self._pending[key] = _Pending(child, len(self._bounds))
        # Histogram.observe counts a value in the first bucket whose bound is >= it: bisect_left.
        pending.counts[bisect_left(self._bounds, seconds)] += 1
        pending.total += seconds

    def fold(self) -> None:
        """Add every pending observation to the histogram (run before each read)."""
        for pending in self._pending.values():
            counts = pending.counts
            if not any(counts):
                continue
            child: Any = pending.child
            for index, count in enumerate(counts):
                if count:
                    child._buckets[index].inc(count)
                    counts[index] = 0
            child._sum.inc(pending.total)
            pending.total = 0.0


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
    "FoldedHistogram",
    "HttpMetrics",
    "HttpMetricsMiddleware",
    "metrics_endpoint",
    "route_template",
]
