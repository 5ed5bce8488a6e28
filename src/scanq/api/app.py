"""App factories: the ingest app, the status app, and both in one (``scanq api``).

Each composes explicitly: a store (opened and closed by the lifespan unless
the caller passes an open one), the scan service over it, the service's
operations plus ``/healthz``, ``/readyz``, ``/openapi.json`` and ``/metrics``,
and the exception handlers of ``errors.py``. Each app has its own Prometheus
registry. Middleware is plain ASGI only: the request-latency histogram and
the cross-site guard (``crosssite.py``: allowed hosts, no state change from
another site, JSON bodies) on every app, and on ingest the CORS policy that
lets the dashboard (served by status, another origin) submit and cancel.
Ingest's submissions and status's reads by id without an ``Origin`` are
answered before that stack by ``hotpath.HotEntry`` (the same cross-site rules,
metrics and error handlers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from scanq import __version__
from scanq.api.callers import OPEN, Callers
from scanq.api.crosssite import CrossSiteGuard, CrossSiteRules
from scanq.api.dashboard import Dashboard, cors_middleware, static_mount
from scanq.api.errors import EXCEPTION_HANDLERS
from scanq.api.events import EventStreams
from scanq.api.health import TAG, HealthEndpoints
from scanq.api.hotpath import HotApp, HotEntry, RawHandler, ReadHandler
from scanq.api.http import encoder
from scanq.api.ingest import IngestEndpoints
from scanq.api.limits import EVENT_STREAM_SHARE
from scanq.api.metrics import HttpMetrics, HttpMetricsMiddleware, metrics_endpoint
from scanq.api.openapi import Endpoint, Operation, Reply, build_openapi, build_routes, declare_enum
from scanq.api.status import StatusEndpoints, wants_html
from scanq.api.webhooks import WebhookEndpoints
from scanq.auth import Authenticator
from scanq.config import Settings
from scanq.event_feed import EventFeed
from scanq.metrics import QueueStatsCollector, ScanCounters, make_registry
from scanq.models import TenantQueue
from scanq.scanners import ScannerRegistry
from scanq.scans import ScanService
from scanq.store import Store, open_store
from scanq.webhook_service import WebhookService

logger = logging.getLogger(__name__)

# Every service also refuses a Host that is not an allowed name (400 host_not_allowed), and its HTTP edge
# answers 408, 413, 414 and 431 before any operation runs: see docs/security.md.
_EDGE = " Edge limits and cross-site rules: docs/security.md."
INGEST_DESCRIPTION = (
    "Queue scans (default port 10550). Scans are stored durably before the answer. Webhook endpoints." + _EDGE
)
STATUS_DESCRIPTION = (
    "Read scans (default port 10551): one by id, pages, counts by status, live events (server-sent events)." + _EDGE
)
API_DESCRIPTION = "Ingest and status in one process. GET / queues a scan (ingest); GET /scans lists them." + _EDGE

# Served by HotEntry before Starlette: the submissions, where requests per second matter most.
HOT_INGEST_ROUTES = frozenset({("POST", "/scans"), ("POST", "/scans/batch")})
# Of those, answered without a Request or Response (IngestEndpoints.submit_raw).
SUBMIT_ROUTE = ("POST", "/scans")
# Status's reads by id, served by HotEntry too when the path's id is a scan id (StatusEndpoints.get_scan_raw).
READ_ROUTES = frozenset({"/scans/{scan_id}", "/{scan_id}"})
# GETs that write: the original contract's GET / queues a scan, GET /webhooks/callbacks may make the callback
# endpoint; so a browser on another site may not send them.
QUEUEING_GET_PATHS = frozenset({"/", "/webhooks/callbacks"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """What a service's operations act through, made once per app over its store.

    Args:
        scans: submit, cancel and read scans.
        webhooks: a tenant's webhook endpoints and deliveries.
        streams: the server-sent event streams (one event feed per app).
        callers: who each request is from.
        raw: the hot routes answered without a ``Request`` (``hotpath.HotEntry``), filled in by the operations.
        read: the reads by id (``READ_ROUTES``) answered without a ``Request``, set by the status operations.
    """

    scans: ScanService
    webhooks: WebhookService
    streams: EventStreams
    callers: Callers
    raw: dict[tuple[str, str], RawHandler] = field(default_factory=dict)
    read: list[ReadHandler] = field(default_factory=list)


def max_event_streams(settings: Settings) -> int:
    """Event streams one process serves at once: a share of its connections, so requests still get through."""
    return max(1, int(settings.max_connections * EVENT_STREAM_SHARE))


def create_ingest_app(
    settings: Settings, store: Store | None = None, scanners: ScannerRegistry | None = None
) -> Starlette:
    """The ingest service.

    Args:
        settings: limits, defaults and (when ``store`` is None) the database URL.
        store: an open store to use; None opens ``settings.database_url`` for the app's lifetime.
        scanners: the plugin registry; None builds one from the installed plugins.
    """

    def operations(services: Services) -> list[Operation]:
        ingest = IngestEndpoints(scans=services.scans, settings=settings, callers=services.callers)
        webhooks = WebhookEndpoints(webhooks=services.webhooks, settings=settings, callers=services.callers)
        services.raw[SUBMIT_ROUTE] = ingest.submit_raw
        return [*ingest.operations(), *webhooks.operations()]

    return _assemble(
        "scanq ingest",
        INGEST_DESCRIPTION,
        settings=settings,
        store=store,
        scanners=scanners,
        operations=operations,
        middleware=[cors_middleware(settings)],
        hot_routes=HOT_INGEST_ROUTES,
        unsafe_get_paths=QUEUEING_GET_PATHS,
    )


def create_status_app(
    settings: Settings,
    store: Store | None = None,
    scanners: ScannerRegistry | None = None,
    *,
    dashboard: Endpoint | None = None,
) -> Starlette:
    """The status service.

    Args:
        settings: limits and (when ``store`` is None) the database URL.
        store: an open store to use; None opens ``settings.database_url`` for the app's lifetime.
        scanners: the plugin registry; None builds one from the installed plugins.
        dashboard: what answers a browser's ``GET /``; None: the built-in dashboard (also at ``/dashboard``).
    """
    page = Dashboard(settings)
    browser_root = dashboard or page.endpoint

    def operations(services: Services) -> list[Operation]:
        status = StatusEndpoints(scans=services.scans, dashboard=browser_root, callers=services.callers)
        services.read.append(status.get_scan_raw)
        return [*services.streams.operations(), *status.operations(), page.operation()]

    return _assemble(
        "scanq status",
        STATUS_DESCRIPTION,
        settings=settings,
        store=store,
        scanners=scanners,
        operations=operations,
        mounts=[static_mount()],
    )


def create_api_app(
    settings: Settings,
    store: Store | None = None,
    scanners: ScannerRegistry | None = None,
    *,
    dashboard: Endpoint | None = None,
) -> Starlette:
    """Ingest and status in one process, on one store.

    Every path is the same as on the separate services except ``GET /``, which
    both define: here it keeps the ingest contract (queue a scan, answer its
    id) and the list is at ``GET /scans``; a browser gets the dashboard when
    there is one, so a visit never queues a scan.

    Args:
        settings: limits, defaults and (when ``store`` is None) the database URL.
        store: an open store to use; None opens ``settings.database_url`` for the app's lifetime.
        scanners: the plugin registry; None builds one from the installed plugins.
        dashboard: what answers a browser's ``GET /``; None: the built-in dashboard (also at ``/dashboard``).
    """
    page = Dashboard(settings)
    browser_root = dashboard or page.endpoint

    def operations(services: Services) -> list[Operation]:
        ingest = IngestEndpoints(scans=services.scans, settings=settings, callers=services.callers)
        webhooks = WebhookEndpoints(webhooks=services.webhooks, settings=settings, callers=services.callers)
        status = StatusEndpoints(scans=services.scans, callers=services.callers)
        services.raw[SUBMIT_ROUTE] = ingest.submit_raw
        services.read.append(status.get_scan_raw)
        root = _with_dashboard(ingest.root_operation(), browser_root)
        # Status's GET /{scan_id} comes last, after every fixed path.
        return [
            root,
            *ingest.operations(with_root=False),
            *webhooks.operations(),
            *services.streams.operations(),
            *status.operations(with_root=False),
            page.operation(),
        ]

    return _assemble(
        "scanq api",
        API_DESCRIPTION,
        settings=settings,
        store=store,
        scanners=scanners,
        operations=operations,
        mounts=[static_mount()],
        middleware=[cors_middleware(settings)],
        hot_routes=HOT_INGEST_ROUTES,
        unsafe_get_paths=QUEUEING_GET_PATHS,
    )


def _with_dashboard(op: Operation, dashboard: Endpoint) -> Operation:
    """``op`` answering a browser with the dashboard instead."""
    endpoint = op.endpoint

    async def root(request: Request) -> Response:
        if wants_html(request):
            return await dashboard(request)
        return await endpoint(request)

    return Operation(
        method=op.method,
        path=op.path,
        endpoint=root,
        operation_id=op.operation_id,
        summary=op.summary,
        tag=op.tag,
        replies=op.replies,
        params=op.params,
        allow_head=op.allow_head,
        secured=op.secured,
    )


def _tenant_queues(store: Store) -> Callable[[int], Awaitable[list[TenantQueue]]]:
    async def fetch(limit: int) -> list[TenantQueue]:
        return await store.tenant_queues(limit=limit)

    return fetch


def _metrics_operation(registry: CollectorRegistry, queue: QueueStatsCollector) -> Operation:
    """``GET /metrics``: this process's registry; the queue gauges come from the store at most every few seconds."""
    return Operation(
        method="GET",
        path="/metrics",
        endpoint=metrics_endpoint(registry, queue=queue),
        operation_id="metrics",
        summary="Prometheus metrics of this process",
        tag=TAG,
        replies={
            200: Reply(description="Prometheus text format", schema={"type": "string"}, media_type=CONTENT_TYPE_LATEST)
        },
    )


def _assemble(
    title: str,
    description: str,
    *,
    settings: Settings,
    store: Store | None,
    scanners: ScannerRegistry | None,
    operations: Callable[[Services], Sequence[Operation]],
    mounts: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
    hot_routes: Collection[tuple[str, str]] = (),
    unsafe_get_paths: Collection[str] = (),
) -> Starlette:
    is_owned = store is None
    the_store = open_store(settings.database_url) if store is None else store
    registry = make_registry()
    plugins = scanners or ScannerRegistry(settings)
    webhooks = WebhookService(the_store, settings)  # also checks callback_url and makes the callback endpoint
    service = ScanService(the_store, plugins, settings, counters=ScanCounters(registry), callbacks=webhooks)
    callers = Callers(Authenticator(the_store)) if settings.auth_required else OPEN
    feed = EventFeed(the_store)
    services = Services(
        scans=service,
        webhooks=webhooks,
        streams=EventStreams(feed=feed, callers=callers, max_streams=max_event_streams(settings)),
        callers=callers,
    )
    health = HealthEndpoints(store=the_store)
    metrics = _metrics_operation(
        registry, QueueStatsCollector(the_store.stats, tenants=_tenant_queues(the_store), registry=registry)
    )
    # Fixed paths before templated ones (stable otherwise), so /healthz never reads as a scan id.
    ops = sorted([*operations(services), *health.operations(), metrics], key=lambda op: "{" in op.path)
    document = build_openapi(
        title=title, version=__version__, description=description, operations=ops, tokens_required=callers.required
    )
    if "ScanRequest" in document["components"]["schemas"]:
        # Another name is a 422 unknown_scanner: say so in the schema, as strict as the server.
        declare_enum(document, schema="ScanRequest", field="scanner", values=plugins.names)
    health.document = encoder.encode(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if callers.required:
            logger.info("%s: API tokens required", title, extra={"action": "auth_on"})
        if not is_owned:
            try:
                yield
            finally:
                await feed.aclose()
                await callers.aclose()
            return
        async with the_store:
            logger.info("%s: store open", title, extra={"action": "store_open"})
            try:
                yield
            finally:
                await feed.aclose()
                await callers.aclose()

    routes = build_routes(ops)
    hot = [route for route in routes if any((method, route.path) in hot_routes for method in route.methods or ())]
    reads = [route for route in routes if route.path in READ_ROUTES and "GET" in (route.methods or ())]
    rules = CrossSiteRules(settings, unsafe_get_paths=unsafe_get_paths)
    http_metrics = HttpMetrics(registry)
    app = HotApp(
        routes=[*mounts, *routes],
        # Metrics outermost, so the latency covers CORS answers too. The hot routes are served before this
        # stack (HotEntry: the same cross-site rules, metrics and exception handlers), but not with an Origin.
        middleware=[
            Middleware(HttpMetricsMiddleware, metrics=http_metrics),
            Middleware(CrossSiteGuard, rules=rules),
            *middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    if hot or services.read:
        app.hot = HotEntry(rules=rules, metrics=http_metrics, handlers=EXCEPTION_HANDLERS)
        app.hot.add(hot, raw=services.raw)
        if services.read:
            app.hot.add_reads(reads, services.read[0])
    app.state.store = the_store
    app.state.metrics = registry
    app.state.scans = service
    app.state.callers = callers
    app.state.webhooks = services.webhooks
    app.state.events = feed
    app.state.streams = services.streams
    app.state.openapi = document
    return app
