"""The loops that look after leases while scans run: heartbeat, scan timeouts, reaper.

- ``heartbeat_loop`` renews every held lease in one call, and stops scans
  whose lease was lost (another attempt owns the scan now) or whose cancel
  was requested;
- ``timeout_loop`` is one sweep that stops scans running past the scan
  timeout (a timer per scan would cost more than a no-op scan itself);
- ``reaper_loop`` calls ``store.requeue_expired``, safe on every worker at once.

An outage longer than the lease leaves every lease expired when the store
comes back, the live ones too: nobody could renew them. So the reaper does
not reap while its process sees the store down, nor until the store has
answered for ``reaper_grace_s`` (a heartbeat period plus a margin), by which
time every live worker has renewed its leases (a renewal applies to a lease
that expired but was not yet taken); and this worker's heartbeat renews at
once when the store answers again. Only the leases of workers that did not
come back are then requeued.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

from scanq.config import Settings
from scanq.exceptions import StoreUnavailable
from scanq.metrics import WorkerMetrics
from scanq.models import Lease
from scanq.store import Store
from scanq.worker.retry import StoreHealth, StoreRetry, log_store_failure, wait_event
from scanq.worker.running import Running, StopReason

logger = logging.getLogger("scanq.worker")

REAPER_BATCH = 1000
# A heartbeat that failed is tried again sooner than the interval, starting from this delay.
HEARTBEAT_RETRY_BASE_S = 0.5
# Scan timeouts are enforced by one sweep at this interval (at most; a quarter of the timeout when shorter).
TIMEOUT_SWEEP_MAX_S = 1.0
# After an outage the reaper waits a heartbeat period times this, plus the margin below: a live worker's
# heartbeat retries at least once a heartbeat period, and its first call after the outage may be slow.
REAPER_GRACE_HEARTBEATS = 1.5
REAPER_GRACE_MARGIN_S = 1.0


def reaper_grace_s(settings: Settings) -> float:
    """How long the store must have answered again after an outage before this worker reaps."""
    return settings.heartbeat_seconds * REAPER_GRACE_HEARTBEATS + REAPER_GRACE_MARGIN_S


async def heartbeat_loop(
    *,
    store: Store,
    settings: Settings,
    worker_id: str,
    running: Mapping[str, Running],
    held: Mapping[str, Lease],
    health: StoreHealth | None = None,
) -> None:
    """Every ``heartbeat_seconds``, renew ``held`` and stop the running scans the store says to stop.

    Args:
        store: where the leases are.
        settings: ``heartbeat_seconds`` and ``lease_seconds``.
        worker_id: for the log lines.
        running: the worker's running attempts by scan id (read, and stopped, here).
        held: every lease the worker still owns, running or with an unwritten outcome.
        health: the process's view of the store: told of every heartbeat's fate, and when the store
            answers again after an outage the heartbeat renews at once (before any reaper may reap).
    """
    interval = settings.heartbeat_seconds
    health = health if health is not None else StoreHealth()
    retry = StoreRetry("heartbeat", base_s=HEARTBEAT_RETRY_BASE_S, max_s=interval, full_jitter=True, health=health)
    delay = interval
    while True:
        await wait_event(health.recovered, delay)
        health.recovered.clear()  # else, with nothing held, a set event would spin this loop
        sent = dict(held)
        if not sent:
            continue
        try:
            answer = await store.heartbeat(leases=list(sent.values()), lease_s=settings.lease_seconds)
        except Exception as exc:
            delay = retry.failed(exc)
            continue
        retry.succeeded()
        health.recovered.clear()  # this renewal is the one a recovery asks for
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


async def reaper_loop(
    *,
    store: Store,
    interval_s: float,
    worker_id: str,
    metrics: WorkerMetrics | None,
    health: StoreHealth | None = None,
    grace_s: float = 0.0,
) -> None:
    """Requeue (or finish) the scans whose lease expired, every ``interval_s``; at once while there are more.

    Not while the store is down (seen by any loop sharing ``health``), and not until it has answered
    again for ``grace_s``: see the module docstring. While down, ``store.ping`` tells when it is back.

    Args:
        store: where the scans are.
        interval_s: the reaper interval.
        worker_id: for the log lines.
        metrics: counts the scans handled, if given.
        health: the process's view of the store (default: the reaper's own calls only).
        grace_s: how long the store must have answered after an outage before reaping (``reaper_grace_s``).
    """
    health = health if health is not None else StoreHealth()
    # Spread the reapers of workers started together.
    await asyncio.sleep(random.uniform(0, interval_s))
    while True:
        count = 0
        if health.is_down:
            await _probe(store, health)
        elif (wait_s := grace_s - health.up_for()) > 0:
            logger.debug("store back for %.2fs: reaping in %.2fs", health.up_for(), wait_s)
            await asyncio.sleep(min(wait_s, interval_s))
            continue
        else:
            count = await _reap(store, health, interval_s)
        if count:
            logger.info("requeued %d scans whose lease expired", count, extra={"worker": worker_id})
            if metrics is not None:
                metrics.record_lease_expired(count)
        if count < REAPER_BATCH:
            await asyncio.sleep(interval_s)


async def _reap(store: Store, health: StoreHealth, interval_s: float) -> int:
    try:
        count = await store.requeue_expired(limit=REAPER_BATCH)
    except Exception as exc:
        log_store_failure("requeue_expired", exc, interval_s)
        if isinstance(exc, StoreUnavailable):
            health.failed()
        return 0
    health.answered()
    return count


async def _probe(store: Store, health: StoreHealth) -> None:
    """While the store is down: a ping, so the grace period starts when the store answers (not when we reap)."""
    try:
        await store.ping()
    except Exception as exc:
        logger.debug("store still unavailable: %s", exc)
        return
    health.answered()


__all__ = [
    "REAPER_BATCH",
    "REAPER_GRACE_HEARTBEATS",
    "REAPER_GRACE_MARGIN_S",
    "heartbeat_loop",
    "reaper_grace_s",
    "reaper_loop",
    "timeout_loop",
]
