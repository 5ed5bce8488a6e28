"""Prometheus metrics: what each scanq process counts, and how a worker exposes it.

Every process builds its own ``CollectorRegistry`` (``make_registry``) and
passes it to the metric groups it updates; nothing registers on the global
default registry, so tests can build any number of apps in one process.

- ``ScanCounters`` (ingest): scans submitted, cancel requests accepted.
- ``WorkerMetrics`` (each worker): claimed, finished by status, retried,
  lease-expired, pruned by status, run time and pickup delay histograms, scans in flight;
  webhook events dispatched, deliveries by outcome, delivery latency, events pruned.
- ``QueueStatsCollector`` (ingest and status): counts by status, queue depth
  and the age of the oldest Accepted scan, read from ``Store.stats()`` (cheap
  by contract) at most once per ``QUEUE_STATS_TTL_S`` however often it is scraped.

Hot-path updates are O(1): label children are resolved once and cached.
``serve_metrics`` serves a worker's registry on ``--metrics-port``. The HTTP
side (request latency middleware, ``GET /metrics``) is ``scanq.api.metrics``:
this module does not import Starlette, so neither does a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scanq.models import DeliveryOutcome, Outcome, Scan, ScanStatus, Stats, TenantQueue

logger = logging.getLogger(__name__)

PREFIX = "scanq"
QUEUE_STATS_TTL_S = 5.0
# Per-tenant gauges name at most this many tenants (the busiest); the rest are summed under OTHER_TENANTS,
# which no tenant can be called (tenant names are letters, digits, '-', '_' and '.').
TENANT_LABELS = 20
OTHER_TENANTS = "(other)"
# Scan run time: mock scans take about a second, real scanners up to the 600 s scan timeout.
RUN_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Pickup delay: milliseconds on an idle queue, minutes or hours behind a backlog.
_SUB_SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
PICKUP_SECONDS_BUCKETS = (*_SUB_SECOND_BUCKETS, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# Webhook latency, from the scan's transition to the endpoint's 2xx: tens of milliseconds when the
# endpoint is up, up to a day (--webhook-max-age-seconds) through its retries when it was down.
DELIVERY_SECONDS_BUCKETS = (*PICKUP_SECONDS_BUCKETS, 21600.0, 86400.0)


def make_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process, platform and GC collectors the default registry would have.

    Args:
        process_metrics: add CPU, memory and file-descriptor metrics of this process (``process_*``).
    """
    registry = CollectorRegistry()
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class FoldedCounter(Counter):
    """A counter whose hot-path increments are a plain integer (``pending``), added to it whenever it is read.

    ``Counter.inc`` takes a lock and checks its argument: a microsecond on every submission. Reading
    (``collect``: every scrape and ``generate_latest``) folds first, so an exposition is always exact;
    increments and reads both happen on the process's event loop.
    """

    pending = 0

    def collect(self) -> Iterable[Metric]:
        pending = self.pending
        if pending:
            self.pending = 0
            self.inc(pending)
        return super().collect()


class ScanCounters:
    """What the ingest service counts: new scans stored, cancel requests accepted.

    Args:
        registry: where the counters are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = FoldedCounter(
            f"{PREFIX}_scans_submitted",
            "Scans stored as Accepted by this process (idempotent replays not counted)",
            registry=registry,
        )
        self.cancelled = Counter(
            f"{PREFIX}_scans_cancelled",
            "Cancel requests accepted by this process (Accepted scans cancelled, Running scans asked to stop)",
            registry=registry,
        )

    def record_submitted(self, count: int = 1) -> None:
        """Count ``count`` newly stored scans (folded into the counter when it is read)."""
        self.submitted.pending += count

    def record_cancelled(self) -> None:
        """Count one accepted cancel request."""
        self.cancelled.inc()


class WorkerMetrics:
    """What one worker counts; every ``record_*`` is O(1) per scan.

    Args:
        registry: where the metrics are registered.
        worker_id: the ``worker`` label of the in-flight gauge.
        in_flight: returns how many scans this worker runs now; read at scrape time, so running a scan costs nothing.
    """

    def __init__(self, registry: CollectorRegistry, *, worker_id: str, in_flight: Callable[[], int]) -> None:
        self.claimed = Counter(f"{PREFIX}_scans_claimed", "Scans claimed (one per attempt)", registry=registry)
        self.finished = Counter(
            f"{PREFIX}_scans_finished",
            "Scans this worker finished, by final status (Complete, Error, Cancelled)",
            ["status"],
            registry=registry,
        )
        self.retried = Counter(
            f"{PREFIX}_scans_retried",
            "Attempts that failed transiently and were sent back to the queue with a backoff",
            registry=registry,
        )
        self.lease_expired = Counter(
            f"{PREFIX}_scans_lease_expired",
            "Running scans whose lease expired (worker lost) and that this worker's reaper handled",
            registry=registry,
        )
        self.pruned = Counter(
            f"{PREFIX}_scans_pruned",
            "Finished scans this worker deleted under --retention, by status (archived first with an archive)",
            ["status"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            f"{PREFIX}_scan_run_seconds",
            "Time one attempt ran in the scanner, in seconds",
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        )
        self.pickup_seconds = Histogram(
            f"{PREFIX}_scan_pickup_seconds",
            "Time from submission (created_at) to the first claim (started_at), in seconds",
            buckets=PICKUP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_scans_in_flight", "Scans this worker is running now", ["worker"], registry=registry
        )
        self.events_dispatched = Counter(
            f"{PREFIX}_webhook_events_dispatched",
            "Scan events this worker fanned out to webhook deliveries (while it held the webhook role)",
            registry=registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook delivery attempts this worker recorded, by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            f"{PREFIX}_webhook_delivery_seconds",
            "Time from a scan event (its transition) to the endpoint's 2xx answer, in seconds",
            buckets=DELIVERY_SECONDS_BUCKETS,
            registry=registry,
        )
        self.events_pruned = Counter(
            f"{PREFIX}_events_pruned",
            "Scan events this worker deleted under --event-retention-seconds",
            registry=registry,
        )
        self._by_delivery = {outcome: self.deliveries.labels(outcome=outcome.value) for outcome in DeliveryOutcome}
        self.in_flight.labels(worker=worker_id).set_function(in_flight)
        # Resolved once: labels() takes a lock and hashes its arguments on every call.
        self._by_outcome = {
            Outcome.COMPLETE: self.finished.labels(status=ScanStatus.COMPLETE.value),
            Outcome.ERROR: self.finished.labels(status=ScanStatus.ERROR.value),
            Outcome.CANCELLED: self.finished.labels(status=ScanStatus.CANCELLED.value),
            Outcome.RETRY: self.retried,
        }

    def record_claimed(self, scans: Sequence[Scan]) -> None:
        """Count a claim batch and observe each first attempt's pickup delay.

        Retries are left out of the pickup histogram: their wait includes the
        earlier attempts and the backoff, which would hide the queue's own delay.
        """
        self.claimed.inc(len(scans))
        for scan in scans:
            if scan.attempt == 1 and scan.started_at is not None:
                self.pickup_seconds.observe(max(0.0, (scan.started_at - scan.created_at).total_seconds()))

    def record_finished(self, outcome: Outcome) -> None:
        """Count one outcome the store applied (RETRY counts as retried, not finished)."""
        counter = self._by_outcome.get(outcome)
        if counter is not None:
            counter.inc()

    def record_run_time(self, seconds: float) -> None:
        """Observe how long one attempt ran."""
        self.run_seconds.observe(seconds)

    def record_lease_expired(self, count: int) -> None:
        """Count scans the reaper handled."""
        if count:
            self.lease_expired.inc(count)

    def record_pruned(self, status: ScanStatus, count: int) -> None:
        """Count finished scans retention deleted."""
        if count:
            self.pruned.labels(status=status.value).inc(count)

    def record_dispatched(self, count: int) -> None:
        """Count scan events fanned out to deliveries."""
        if count:
            self.events_dispatched.inc(count)

    def record_delivery(self, outcome: DeliveryOutcome, *, latency_s: float | None = None) -> None:
        """Count one recorded delivery attempt; a delivered one also observes its latency since the event."""
        self._by_delivery[outcome].inc()
        if latency_s is not None:
            self.delivery_seconds.observe(max(0.0, latency_s))

    def record_events_pruned(self, count: int) -> None:
        """Count scan events retention deleted."""
        if count:
            self.events_pruned.inc(count)


class QueueStatsCollector(Collector):
    """Counts by status, queue depth and oldest Accepted age, from a ``Store.stats()`` cached for ``ttl_s``.

    Prometheus collectors are synchronous, so the async ``refresh()`` runs
    first (``scanq.api.metrics.metrics_endpoint`` does it) and ``collect()`` reads the cache.
    Concurrent refreshes share one store call. The age is computed at collect
    time from the cached ``oldest_accepted_at``, so it keeps growing between
    refreshes. When the store fails, the queue metrics are left out of the
    scrape (absent, not stale) until a refresh succeeds.

    Args:
        fetch: returns the store's stats (usually ``store.stats``, bound late if the store opens in a lifespan).
        tenants: returns the busiest tenants' queues (``store.tenant_queues``), for the per-tenant gauges:
            the ``TENANT_LABELS`` busiest, the rest summed under ``(other)`` (bounded cardinality); None: none.
        registry: where to register; None to register later.
        ttl_s: how long one ``stats()`` answer is reused.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Stats]],
        *,
        tenants: Callable[[int], Awaitable[list[TenantQueue]]] | None = None,
        registry: CollectorRegistry | None = None,
        ttl_s: float = QUEUE_STATS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._fetch_tenants = tenants
        self._tenants: list[TenantQueue] = []
        self._ttl_s = ttl_s
        self._clock = clock
        self._stats: Stats | None = None
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        if registry is not None:
            registry.register(self)

    @property
    def stats(self) -> Stats | None:
        """The cached answer (None before the first successful refresh or after a failed one)."""
        return self._stats

    async def refresh(self) -> None:
        """Call ``fetch`` unless the cached answer is younger than ``ttl_s``."""
        if self._is_fresh():
            return
        async with self._lock:
            if self._is_fresh():  # another scrape refreshed it while this one waited
                return
            try:
                self._stats = await self._fetch()
                if self._fetch_tenants is not None:
                    self._tenants = await self._fetch_tenants(TENANT_LABELS)
            except Exception as exc:
                self._stats = None
                self._tenants = []
                logger.warning("queue metrics: store stats failed: %s", exc)
            # Also after a failure: a store that is down is asked again only after ttl_s.
            self._fetched_at = self._clock()

    def _is_fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._ttl_s

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self._stats)

    def _families(self, stats: Stats | None = None) -> list[Metric]:
        by_status = GaugeMetricFamily(
            f"{PREFIX}_scans", "Scans in the store by status (cached store stats)", labels=["status"]
        )
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Scans waiting in Accepted (cached store stats)")
        age = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_age_seconds",
            "Age of the oldest claimable Accepted scan in seconds, 0 when none (cached store stats)",
        )
        families: list[Metric] = [by_status, depth, age]
        if stats is not None:
            for status in ScanStatus:
                by_status.add_metric([status.value], stats.counts.get(status, 0))
            depth.add_metric([], stats.counts.get(ScanStatus.ACCEPTED, 0))
            oldest = stats.oldest_accepted_at
            age.add_metric([], 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        if self._fetch_tenants is not None:
            families += self._tenant_families(stats)
        return families

    def _tenant_families(self, stats: Stats | None) -> list[Metric]:
        """Waiting and running scans per tenant: the busiest ``TENANT_LABELS`` tenants, the rest as ``other``."""
        waiting = GaugeMetricFamily(
            f"{PREFIX}_tenant_queue_depth",
            "Accepted scans per tenant (busiest tenants, the rest as other)",
            labels=["tenant"],
        )
        running = GaugeMetricFamily(
            f"{PREFIX}_tenant_running",
            "Running scans per tenant (busiest tenants, the rest as other)",
            labels=["tenant"],
        )
        if stats is None:
            return [waiting, running]
        for queue in self._tenants:
            waiting.add_metric([queue.tenant], queue.accepted)
            running.add_metric([queue.tenant], queue.running)
        other_waiting = stats.counts.get(ScanStatus.ACCEPTED, 0) - sum(q.accepted for q in self._tenants)
        other_running = stats.counts.get(ScanStatus.RUNNING, 0) - sum(q.running for q in self._tenants)
        waiting.add_metric([OTHER_TENANTS], max(0, other_waiting))
        running.add_metric([OTHER_TENANTS], max(0, other_running))
        return [waiting, running]


@contextlib.asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, *, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``registry`` at ``http://host:port/metrics`` (any path works) while the block runs; yield the port.

    prometheus-client's own threaded HTTP server: scrapes never wait for the
    worker's event loop, however busy it is. ``port`` 0 picks a free port.
    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound_port = int(server.server_address[1])
    logger.info("metrics on http://%s:%d/metrics", host, bound_port)
    try:
        yield bound_port
    finally:
        # shutdown() waits for the serving thread's poll loop (up to 0.5 s): keep the event loop free meanwhile.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=1.0)


__all__ = [
    "OTHER_TENANTS",
    "PREFIX",
    "QUEUE_STATS_TTL_S",
    "TENANT_LABELS",
    "FoldedCounter",
    "QueueStatsCollector",
    "ScanCounters",
    "WorkerMetrics",
    "make_registry",
    "serve_metrics",
]
