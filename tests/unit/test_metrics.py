"""Metric groups, the cached queue stats, the latency middleware and the metrics endpoints."""

from __future__ import annotations

import asyncio
import bisect
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from scanq.api.metrics import HTTP_SECONDS_BUCKETS, HttpMetrics, HttpMetricsMiddleware, metrics_endpoint
from scanq.metrics import (
    OTHER_TENANTS,
    TENANT_LABELS,
    QueueStatsCollector,
    ScanCounters,
    WorkerMetrics,
    make_registry,
)
from scanq.models import Outcome, Scan, ScanStatus, Stats, TenantQueue
from tests.clocks import ManualClock
from tests.prometheus import sample_sum, sample_value

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def running_scan(*, attempt: int, pickup_s: float) -> Scan:
    return Scan(
        scan_id=str(uuid.uuid4()),
        status=ScanStatus.RUNNING,
        target=None,
        scanner="mock",
        options={},
        priority=0,
        attempt=attempt,
        max_attempts=3,
        created_at=T0,
        updated_at=T0,
        available_at=T0,
        started_at=T0 + timedelta(seconds=pickup_s),
    )


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def stats(accepted: int, *, oldest: datetime | None = None) -> Stats:
    counts = dict.fromkeys(ScanStatus, 0)
    counts[ScanStatus.ACCEPTED] = accepted
    counts[ScanStatus.COMPLETE] = 7
    return Stats(counts=counts, oldest_accepted_at=oldest)


def test_registries_are_independent_so_several_apps_can_live_in_one_process() -> None:
    first, second = make_registry(), make_registry(process_metrics=False)
    ScanCounters(first).record_submitted(3)
    ScanCounters(second).record_submitted(1)
    assert sample_value(exposition(first), "scanq_scans_submitted_total") == 3
    assert sample_value(exposition(second), "scanq_scans_submitted_total") == 1
    assert sample_value(exposition(first), "process_cpu_seconds_total") is not None
    assert sample_value(exposition(second), "process_cpu_seconds_total") is None


def test_worker_metrics_count_claims_outcomes_and_observe_first_pickups_only() -> None:
    registry = make_registry(process_metrics=False)
    running = [0]
    metrics = WorkerMetrics(registry, worker_id="w-1", in_flight=lambda: running[0])

    metrics.record_claimed([running_scan(attempt=1, pickup_s=0.2), running_scan(attempt=2, pickup_s=50.0)])
    metrics.record_claimed([running_scan(attempt=1, pickup_s=3.0)])
    for outcome in (Outcome.COMPLETE, Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED, Outcome.RETRY):
        metrics.record_finished(outcome)
    metrics.record_finished(Outcome.RELEASED)  # not a finish: ignored
    metrics.record_run_time(0.5)
    metrics.record_lease_expired(2)
    metrics.record_lease_expired(0)
    running[0] = 5

    text = exposition(registry)
    assert sample_value(text, "scanq_scans_claimed_total") == 3
    assert sample_value(text, "scanq_scan_pickup_seconds_count") == 2
    assert sample_value(text, "scanq_scan_pickup_seconds_sum") == pytest.approx(3.2)
    assert sample_value(text, "scanq_scan_pickup_seconds_bucket", {"le": "0.25"}) == 1
    assert sample_value(text, "scanq_scans_finished_total", {"status": "Complete"}) == 2
    assert sample_value(text, "scanq_scans_finished_total", {"status": "Error"}) == 1
    assert sample_value(text, "scanq_scans_finished_total", {"status": "Cancelled"}) == 1
    assert sample_value(text, "scanq_scans_retried_total") == 1
    assert sample_value(text, "scanq_scans_lease_expired_total") == 2
    assert sample_value(text, "scanq_scan_run_seconds_count") == 1
    assert sample_value(text, "scanq_scans_in_flight", {"worker": "w-1"}) == 5


def test_scan_counters() -> None:
    registry = make_registry(process_metrics=False)
    counters = ScanCounters(registry)
    counters.record_submitted()
    counters.record_submitted(9)
    counters.record_cancelled()
    text = exposition(registry)
    assert sample_value(text, "scanq_scans_submitted_total") == 10
    assert sample_value(text, "scanq_scans_cancelled_total") == 1


async def test_queue_stats_are_cached_for_the_ttl_and_concurrent_scrapes_share_one_store_call() -> None:
    calls = 0
    accepted = 4

    async def fetch() -> Stats:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return stats(accepted, oldest=datetime.now(UTC) - timedelta(seconds=30))

    clock = ManualClock(100.0)
    registry = make_registry(process_metrics=False)
    queue = QueueStatsCollector(fetch, registry=registry, ttl_s=5.0, clock=clock)

    await asyncio.gather(*(queue.refresh() for _ in range(10)))
    assert calls == 1
    text = exposition(registry)
    assert sample_value(text, "scanq_queue_depth") == 4
    assert sample_value(text, "scanq_scans", {"status": "Complete"}) == 7
    assert sample_value(text, "scanq_scans", {"status": "Running"}) == 0
    age = sample_value(text, "scanq_queue_oldest_age_seconds")
    assert age is not None and 29.0 <= age < 40.0

    accepted = 9
    clock.now += 4.9
    await queue.refresh()
    assert calls == 1
    assert sample_value(exposition(registry), "scanq_queue_depth") == 4

    clock.now += 0.2
    await queue.refresh()
    assert calls == 2
    assert sample_value(exposition(registry), "scanq_queue_depth") == 9


async def test_queue_stats_report_zero_age_when_nothing_waits() -> None:
    async def fetch() -> Stats:
        return stats(0)

    registry = make_registry(process_metrics=False)
    queue = QueueStatsCollector(fetch, registry=registry)
    await queue.refresh()
    assert sample_value(exposition(registry), "scanq_queue_oldest_age_seconds") == 0


async def test_queue_stats_are_absent_while_the_store_fails_and_retried_after_the_ttl() -> None:
    is_down = True

    async def fetch() -> Stats:
        if is_down:
            raise ConnectionError("store down")
        return stats(2)

    clock = ManualClock(100.0)
    registry = make_registry(process_metrics=False)
    queue = QueueStatsCollector(fetch, registry=registry, ttl_s=1.0, clock=clock)
    await queue.refresh()
    assert sample_value(exposition(registry), "scanq_queue_depth") is None

    is_down = False
    await queue.refresh()  # within the TTL: not asked again
    assert queue.stats is None
    clock.now += 1.0
    await queue.refresh()
    assert sample_value(exposition(registry), "scanq_queue_depth") == 2


def latency_app(registry: CollectorRegistry) -> Starlette:
    async def scan(request: Request) -> Response:
        return PlainTextResponse(request.path_params["scan_id"], status_code=202)

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    routes = [
        Route("/scans/{scan_id}", scan, methods=["GET"]),
        Route("/boom", boom),
        Route("/metrics", metrics_endpoint(registry)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))])


async def test_latency_is_labelled_by_route_template_method_and_code_never_by_raw_path() -> None:
    registry = make_registry(process_metrics=False)
    app = latency_app(registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for n in range(3):
            assert (await client.get(f"/scans/{n}")).status_code == 202
        assert (await client.post("/scans/1")).status_code == 405
        assert (await client.get("/nowhere/at/all")).status_code == 404
        assert (await client.request("BREW", "/scans/1")).status_code == 405
        assert (await client.get("/boom")).status_code == 500
        scraped = await client.get("/metrics")

    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    name = "scanq_http_request_duration_seconds_count"
    assert sample_value(text, name, {"method": "GET", "route": "/scans/{scan_id}", "code": "202"}) == 3
    assert sample_value(text, name, {"method": "POST", "route": "/scans/{scan_id}", "code": "405"}) == 1
    assert sample_value(text, name, {"method": "GET", "route": "unmatched", "code": "404"}) == 1
    assert sample_value(text, name, {"method": "OTHER", "route": "/scans/{scan_id}", "code": "405"}) == 1
    assert sample_value(text, name, {"method": "GET", "route": "/boom", "code": "500"}) == 1
    assert sample_sum(text, name, {"route": "/scans/0"}) == 0


async def test_metrics_endpoint_refreshes_queue_stats_before_exposing_them() -> None:
    async def fetch() -> Stats:
        return stats(12)

    registry = make_registry(process_metrics=False)
    queue = QueueStatsCollector(fetch, registry=registry)
    app = Starlette(routes=[Route("/metrics", metrics_endpoint(registry, queue=queue))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        text = (await client.get("/metrics")).text
    assert sample_value(text, "scanq_queue_depth") == 12


async def test_tenant_gauges_name_the_busiest_tenants_and_sum_the_rest_as_other() -> None:
    queues = [
        TenantQueue(tenant=f"t{i:02}", accepted=100 - i, running=1, oldest_accepted_at=None)
        for i in range(TENANT_LABELS)
    ]
    asked: list[int] = []

    async def fetch() -> Stats:
        # Every tenant's Accepted scans: the listed ones plus 7 of tenants past the limit; 3 more Running.
        listed_accepted = sum(q.accepted for q in queues)
        return Stats(
            counts={**dict.fromkeys(ScanStatus, 0), ScanStatus.ACCEPTED: listed_accepted + 7, ScanStatus.RUNNING: 23},
            oldest_accepted_at=None,
        )

    async def tenants(limit: int) -> list[TenantQueue]:
        asked.append(limit)
        return queues

    registry = make_registry(process_metrics=False)
    queue = QueueStatsCollector(fetch, tenants=tenants, registry=registry)
    await queue.refresh()
    text = exposition(registry)

    assert asked == [TENANT_LABELS]
    assert sample_value(text, "scanq_tenant_queue_depth", {"tenant": "t00"}) == 100
    assert sample_value(text, "scanq_tenant_running", {"tenant": "t19"}) == 1
    assert sample_value(text, "scanq_tenant_queue_depth", {"tenant": OTHER_TENANTS}) == 7
    assert sample_value(text, "scanq_tenant_running", {"tenant": OTHER_TENANTS}) == 3
    assert text.count("scanq_tenant_queue_depth{") == TENANT_LABELS + 1  # bounded: never one series per tenant


def _without_created(text: str) -> list[str]:
    """The exposition's lines but the ``_created`` ones (the time each series began: never the same twice)."""
    return [line for line in text.splitlines() if "_created" not in line]


# Values on, between and beyond the bucket bounds, in an order that revisits label sets.
LATENCIES = [0.0, 0.0005, 0.00050001, 0.001, 0.003, 0.02, 0.25, 0.7, 5.0, 10.0, 10.5, 1e-9, 0.0999999]


def test_folded_latency_exposes_what_observing_each_request_would() -> None:
    """``HttpMetrics`` counts into pending buckets and folds them on read: the same exposition, byte for byte
    but the sum's last bits (added once per read, not once per request) and the series' start times."""
    folded_registry, plain_registry = CollectorRegistry(), CollectorRegistry()
    folded = HttpMetrics(folded_registry)
    plain = Histogram(
        "scanq_http_request_duration_seconds",
        "HTTP request latency in seconds, by method, route template and status code",
        ["method", "route", "code"],
        buckets=HTTP_SECONDS_BUCKETS,
        registry=plain_registry,
    )
    reads = []
    for index, seconds in enumerate(LATENCIES * 3):
        method, route, code = ("POST", "/scans", 202) if index % 3 else ("GET", "unmatched", 404)
        folded.observe(method=method, route=route, code=code, seconds=seconds)
        plain.labels(method=method, route=route, code=str(code)).observe(seconds)
        if index % 7 == 0:  # reads in between fold what is pending so far, and only that
            reads.append((exposition(folded_registry), exposition(plain_registry)))
    reads.append((exposition(folded_registry), exposition(plain_registry)))
    for folded_text, plain_text in reads:
        folded_lines, plain_lines = _without_created(folded_text), _without_created(plain_text)
        assert [line for line in folded_lines if "_sum" not in line] == [
            line for line in plain_lines if "_sum" not in line
        ]
        for labels in ({"route": "/scans"}, {"route": "unmatched"}):
            assert sample_sum(folded_text, "scanq_http_request_duration_seconds_sum", labels) == pytest.approx(
                sample_sum(plain_text, "scanq_http_request_duration_seconds_sum", labels)
            )


def test_the_fold_writes_the_histogram_buckets_prometheus_client_keeps() -> None:
    """Pins the prometheus-client internals the fold writes: a child's ``_upper_bounds`` (+Inf last), its
    ``_buckets`` (one value per bound, not cumulative) and ``_sum``; and a parent's ``collect`` that reads them."""
    metrics = HttpMetrics(CollectorRegistry())
    child: Any = metrics.duration.labels(method="GET", route="/x", code="200")
    assert child._upper_bounds == [*HTTP_SECONDS_BUCKETS, math.inf]
    assert len(child._buckets) == len(child._upper_bounds)
    child.observe(0.003)
    assert [bucket.get() for bucket in child._buckets].index(1.0) == bisect.bisect_left(child._upper_bounds, 0.003)
    assert child._sum.get() == 0.003
    assert isinstance(metrics.duration, Histogram)


def test_folded_counters_read_exact_and_fold_once() -> None:
    registry = make_registry(process_metrics=False)
    counters = ScanCounters(registry)
    for _ in range(5):
        counters.record_submitted()
    assert counters.submitted.pending == 5
    assert sample_value(exposition(registry), "scanq_scans_submitted_total") == 5
    assert counters.submitted.pending == 0
    assert sample_value(exposition(registry), "scanq_scans_submitted_total") == 5
    counters.record_submitted(2)
    assert registry.get_sample_value("scanq_scans_submitted_total") == 7
