"""The loops that look after leases while scans run: heartbeat, scan timeouts, reaper.

- ``heartbeat_loop`` renews every held lease in one call, and stops scans
  whose lease was lost (another attempt owns the scan now) or whose cancel
  was requested;
- ``timeout_loop`` is one sweep that stops scans running past the scan
  timeout (a timer per scan would cost more than a no-op scan itself);
- ``reaper_loop`` calls ``store.requeue_expired``, safe on every worker at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

from scanq.config import Settings
from scanq.metrics import WorkerMetrics
from scanq.models import Lease
from scanq.store import Store
from scanq.worker.retry import StoreRetry, log_store_failure
from scanq.worker.running import Running, StopReason

logger = logging.getLogger("scanq.worker")

REAPER_BATCH = 1000
# A heartbeat that failed is tried again sooner than the interval, starting from this delay.
HEARTBEAT_RETRY_BASE_S = 0.5
# Scan timeouts are enforced by one sweep at this interval (at most; a quarter of the timeout when shorter).
TIMEOUT_SWEEP_MAX_S = 1.0


async def heartbeat_loop(
    *,
    store: Store,
    settings: Settings,
    worker_id: str,
    running: Mapping[str, Running],
    held: Mapping[str, Lease],
) -> None:
    """Every ``heartbeat_seconds``, renew ``held`` and stop the running scans the store says to stop.

    Args:
        store: where the leases are.
        settings: ``heartbeat_seconds`` and ``lease_seconds``.
        worker_id: for the log lines.
        running: the worker's running attempts by scan id (read, and stopped, here).
        held: every lease the worker still owns, running or with an unwritten outcome.
    """
    interval = settings.heartbeat_seconds
    retry = StoreRetry("heartbeat", base_s=HEARTBEAT_RETRY_BASE_S, max_s=interval, full_jitter=True)
    delay = interval
    while True:
        await asyncio.sleep(delay)
        sent = dict(held)
        if not sent:
            continue
        try:
            answer = await store.heartbeat(leases=list(sent.values()), lease_s=settings.lease_seconds)
        except Exception as exc:
            delay = retry.failed(exc)
            continue
        retry.succeeded()
        delay = interval
        for scan_id in answer.lost:
            run = running.get(scan_id)
            # Ignore scans that finished (or were claimed again) while the heartbeat was in flight.
            if run is None or run.lease != sent.get(scan_id):
                continue
            logger.warning(
                "scan %s attempt %d: lease lost, stopping it",
                scan_id,
                run.lease.attempt,
                extra={"scan_id": scan_id, "worker": worker_id, "attempt": run.lease.attempt},
            )
            run.stop(StopReason.LEASE_LOST)
        for scan_id in answer.cancel_requested:
            run = running.get(scan_id)
            if run is not None and run.reason is None and run.lease == sent.get(scan_id):
                run.stop(StopReason.CANCEL_REQUESTED)


async def timeout_loop(*, running: Mapping[str, Running], timeout_s: float) -> None:
    """Stop the attempts that have run longer than ``timeout_s`` (checked at most every second).

    Args:
        running: the worker's running attempts by scan id.
        timeout_s: the scan timeout.
    """
    interval = min(TIMEOUT_SWEEP_MAX_S, timeout_s / 4)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        overdue = loop.time() - timeout_s
        for run in list(running.values()):
            if run.reason is None and run.started <= overdue:
                run.stop(StopReason.TIMED_OUT)


async def reaper_loop(*, store: Store, interval_s: float, worker_id: str, metrics: WorkerMetrics | None) -> None:
    """Requeue (or finish) the scans whose lease expired, every ``interval_s``; at once while there are more.

    Args:
        store: where the scans are.
        interval_s: the reaper interval.
        worker_id: for the log lines.
        metrics: counts the scans handled, if given.
    """
    # Spread the reapers of workers started together.
    await asyncio.sleep(random.uniform(0, interval_s))
    while True:
        try:
            count = await store.requeue_expired(limit=REAPER_BATCH)
        except Exception as exc:
            log_store_failure("requeue_expired", exc, interval_s)
            count = 0
        if count:
            logger.info("requeued %d scans whose lease expired", count, extra={"worker": worker_id})
            if metrics is not None:
                metrics.record_lease_expired(count)
        if count < REAPER_BATCH:
            await asyncio.sleep(interval_s)


__all__ = ["REAPER_BATCH", "heartbeat_loop", "reaper_loop", "timeout_loop"]
