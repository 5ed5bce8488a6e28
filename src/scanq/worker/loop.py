"""The claim/run/finish loop: ``Worker`` claims scans in batches and runs each as one asyncio task.

The claim loop claims as many scans as there are free slots, in one call;
when the queue is empty it sleeps in ``store.wait_for_work`` (woken by the
store, never a fixed one-second poll). Each attempt's outcome goes to the
``OutcomeWriter``; the lease loops (``scanq.worker.leases``) run next to it,
and so do the webhook loops (``scanq.webhooks``; only the dispatcher with ``--no-webhooks``).

Shutdown (``stop()``): stop claiming, wait up to ``shutdown_seconds`` for
running scans, cancel the rest and ``store.release`` them (the attempt is not
counted). A second ``stop()`` skips the wait. Webhook deliveries stop being
claimed at once; those in flight finish meanwhile (see ``webhooks.delivery``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import secrets
import socket
from collections import Counter

from scanq.config import Settings
from scanq.lifecycle import scan_timeout_error
from scanq.metrics import WorkerMetrics
from scanq.models import Finish, Lease, Outcome, Scan, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.store import Store
from scanq.webhooks.runner import Webhooks, start_webhooks
from scanq.worker.attempt import AttemptRunner
from scanq.worker.flush import OutcomeWriter, summary_loop
from scanq.worker.leases import heartbeat_loop, reaper_grace_s, reaper_loop, timeout_loop
from scanq.worker.retention import start_retention
from scanq.worker.retry import (
    STORE_RETRY_BASE_S,
    StoreHealth,
    StoreRetry,
    call_patiently,
    log_store_failure,
    wait_event,
)
from scanq.worker.running import Running, StopReason, lease_of

logger = logging.getLogger("scanq.worker")

CANCEL_GRACE_S = 5.0
FINAL_FLUSH_TIMEOUT_S = 10.0
RELEASE_TIMEOUT_S = 10.0
# A retry becomes claimable at ``retry_at`` by the store's clock; wake a little after it.
RETRY_WAKE_SLACK_S = 0.01
# A claim that came back full means a backlog for this long after it (webhook deliveries yield meanwhile).
BACKLOG_MEMORY_S = 1.0


def make_worker_id() -> str:
    """``hostname:pid:random``: unique per process, and says where to look when a lease goes stale."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs scans from the store until ``stop()`` (or, with ``burst``, until the queue is drained).

    Args:
        store: an open store.
        scanners: the plugins of this process.
        settings: concurrency, lease/heartbeat/reaper/poll intervals, retry backoff, timeouts.
        worker_id: the lease owner name; default ``hostname:pid:random``.
        burst: return once no scan is Accepted or Running and this worker holds nothing (tests, benchmarks).
        metrics: Prometheus counters to update (None: count nothing, the cheapest); may be set until ``run()``.
    """

    def __init__(
        self,
        store: Store,
        scanners: ScannerRegistry,
        settings: Settings,
        *,
        worker_id: str | None = None,
        burst: bool = False,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.scanners = scanners
        self.settings = settings
        self.worker_id = worker_id or make_worker_id()
        self.burst = burst
        self.metrics = metrics
        self.counts: Counter[Outcome] = Counter()
        self._running: dict[str, Running] = {}
        # Every lease this worker still owns: running scans and finished ones whose outcome is not yet written.
        self._held: dict[str, Lease] = {}
        self._is_stopping = False
        self._is_forced = False
        self._stop_event = asyncio.Event()
        self._progress = asyncio.Event()  # a scan task ended or a flush completed
        self._outcomes = OutcomeWriter(
            store, worker_id=self.worker_id, held=self._held, counts=self.counts, progress=self._progress
        )
        # Loop times at which retries this worker scheduled become claimable (a heap): the idle wait ends then.
        self._retry_dues: list[float] = []
        self._attempts = AttemptRunner(
            scanners, settings=settings, worker_id=self.worker_id, on_retry=self._schedule_retry_wake
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # What the claim, heartbeat and reaper loops saw of the store: the reaper waits out an outage on it.
        self._health = StoreHealth()
        self._webhooks: Webhooks | None = None
        self._backlog_seen_at = float("-inf")  # loop time of the last claim that came back full

    @property
    def running(self) -> int:
        """How many scans run right now."""
        return len(self._running)

    def stop(self) -> None:
        """Stop gracefully (signal-handler safe); a second call stops running scans at once."""
        if self._is_stopping:
            self._is_forced = True
        self._is_stopping = True
        self._stop_event.set()
        self._progress.set()

    async def run(self) -> None:
        """Claim and run scans until stopped (or drained in burst mode), then shut down gracefully."""
        logger.info(
            "worker %s started: concurrency %d, lease %.1fs, heartbeat %.1fs",
            self.worker_id,
            self.settings.concurrency,
            self.settings.lease_seconds,
            self.settings.heartbeat_seconds,
            extra={"worker": self.worker_id},
        )
        self._loop = asyncio.get_running_loop()
        self._outcomes.metrics = self.metrics
        flusher = asyncio.create_task(self._outcomes.run(), name="scanq-flush")
        helpers = [
            asyncio.create_task(
                heartbeat_loop(
                    store=self.store,
                    settings=self.settings,
                    worker_id=self.worker_id,
                    running=self._running,
                    held=self._held,
                    health=self._health,
                ),
                name="scanq-heartbeat",
            ),
            asyncio.create_task(
                timeout_loop(running=self._running, timeout_s=self.settings.scan_timeout_seconds),
                name="scanq-timeouts",
            ),
            asyncio.create_task(
                reaper_loop(
                    store=self.store,
                    interval_s=self.settings.reaper_seconds,
                    worker_id=self.worker_id,
                    metrics=self.metrics,
                    health=self._health,
                    grace_s=reaper_grace_s(self.settings),
                ),
                name="scanq-reaper",
            ),
            asyncio.create_task(
                summary_loop(self.counts, running=self._running, worker_id=self.worker_id), name="scanq-summary"
            ),
        ]
        helpers.append(start_retention(self.store, self.settings, owner=self.worker_id, metrics=self.metrics))
        self._webhooks = start_webhooks(
            self.store, self.settings, worker_id=self.worker_id, metrics=self.metrics, busy=self.is_draining_backlog
        )
        try:
            await self._claim_loop()
        except asyncio.CancelledError:
            self._is_forced = True
            raise
        finally:
            self._is_stopping = True
            await self._shutdown(flusher=flusher, helpers=helpers)
            logger.info("worker %s stopped", self.worker_id, extra={"worker": self.worker_id})

    # -- claiming -----------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        retry = StoreRetry("claim", health=self._health)
        while not self._is_stopping:
            # Cleared before the claim, so a scan ending during the claim still wakes the idle wait.
            self._progress.clear()
            free = self.settings.concurrency - len(self._running)
            if free <= 0:
                await self._progress.wait()
                continue
            try:
                scans = await self.store.claim(
                    worker_id=self.worker_id,
                    limit=free,
                    lease_s=self.settings.lease_seconds,
                    max_per_target=self.settings.max_per_target or None,
                )
            except Exception as exc:
                await self._sleep_unless_stopped(retry.failed(exc))
                continue
            retry.succeeded()
            if self._is_stopping:
                # Stopped while claiming: hold them only to release them at shutdown.
                for scan in scans:
                    self._held[scan.scan_id] = lease_of(scan, self.worker_id)
                return
            for scan in scans:
                self._start(scan)
            if len(scans) == free:  # there may be more waiting than we can take: a backlog
                self._backlog_seen_at = asyncio.get_running_loop().time()
            if self.metrics is not None and scans:
                self.metrics.record_claimed(scans)
            if len(scans) < free:
                if self.burst and await self._is_drained():
                    return
                await self._idle()

    def is_draining_backlog(self) -> bool:
        """True while claims come back full (within ``BACKLOG_MEMORY_S``): webhook deliveries then yield to scans."""
        return asyncio.get_running_loop().time() - self._backlog_seen_at < BACKLOG_MEMORY_S

    async def _idle(self) -> None:
        """Wait for new work, a stop, or (burst mode) a scan ending; at most poll_seconds or until a retry is due."""
        now = asyncio.get_running_loop().time()
        timeout = self.settings.poll_seconds
        if self._retry_dues:
            if self._retry_dues[0] <= now:
                while self._retry_dues and self._retry_dues[0] <= now:
                    heapq.heappop(self._retry_dues)
                return
            timeout = min(timeout, self._retry_dues[0] - now + RETRY_WAKE_SLACK_S)
        waiters: list[asyncio.Future[object]] = [
            asyncio.ensure_future(self.store.wait_for_work(timeout_s=timeout)),
            asyncio.ensure_future(self._stop_event.wait()),
        ]
        if self.burst:
            waiters.append(asyncio.ensure_future(self._progress.wait()))
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        for future in done:
            if not future.cancelled() and (exc := future.exception()) is not None:
                logger.debug("wait_for_work failed: %r", exc)
                await self._sleep_unless_stopped(STORE_RETRY_BASE_S)

    async def _is_drained(self) -> bool:
        if self._held or self._running:
            return False
        try:
            stats = await self.store.stats()
        except Exception as exc:
            log_store_failure("stats", exc, 0.0)
            return False
        return stats.counts.get(ScanStatus.ACCEPTED, 0) == 0 and stats.counts.get(ScanStatus.RUNNING, 0) == 0

    # -- running one scan ---------------------------------------------------------------------------

    def _start(self, scan: Scan) -> None:
        loop = self._loop
        assert loop is not None
        scan_id = scan.scan_id
        lease = lease_of(scan, self.worker_id)
        old = self._running.get(scan_id)
        if old is not None:
            # The store handed us a newer attempt of a scan we still run: the old attempt's lease is gone.
            old.stop(StopReason.LEASE_LOST)
        self._held[scan_id] = lease
        run = Running(scan, lease, loop.time(), self._on_done, self._attempts.run(scan, lease))
        run.task = loop.create_task(run.run())
        self._running[scan_id] = run

    def _schedule_retry_wake(self, delay_s: float) -> None:
        assert self._loop is not None
        heapq.heappush(self._retry_dues, self._loop.time() + delay_s)

    def _on_done(self, run: Running, finish: Finish | None) -> None:
        """How an attempt ended (``Running.end``, once per attempt): its ``Finish``, or None when it was cancelled."""
        if run.is_ended:
            return
        run.is_ended = True
        scan_id = run.lease.scan_id
        if self._running.get(scan_id) is run:
            del self._running[scan_id]
        self._progress.set()
        if self.metrics is not None and self._loop is not None:
            self.metrics.record_run_time(self._loop.time() - run.started)
        if run.reason is StopReason.LEASE_LOST:
            if self._held.get(scan_id) == run.lease:
                del self._held[scan_id]
            return
        if finish is not None:
            self._outcomes.queue(finish)
        elif run.reason is StopReason.CANCEL_REQUESTED:
            self._outcomes.queue(Finish(lease=run.lease, outcome=Outcome.CANCELLED))
        elif run.reason is StopReason.TIMED_OUT:
            error = scan_timeout_error(self.settings.scan_timeout_seconds)
            self._outcomes.queue(self._attempts.failed(run.scan, run.lease, error))
        # Otherwise (shutdown) the lease stays held and is released at the end of the shutdown.

    # -- shutdown -----------------------------------------------------------------------------------

    async def _shutdown(self, *, flusher: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        if self._webhooks is not None:
            self._webhooks.stop()
        if self._running and not self._is_forced:
            logger.info(
                "stopping: waiting up to %.1fs for %d running scans",
                self.settings.shutdown_seconds,
                len(self._running),
                extra={"worker": self.worker_id},
            )
            deadline = loop.time() + self.settings.shutdown_seconds
            while self._running and not self._is_forced and (remaining := deadline - loop.time()) > 0:
                self._progress.clear()
                await wait_event(self._progress, remaining)
        if self._running:
            tasks = []
            for run in list(self._running.values()):
                if run.reason is None:
                    run.reason = StopReason.SHUTDOWN
                run.cancel()
                tasks.append(run.task)
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)
        self._outcomes.close()
        await asyncio.wait([flusher], timeout=FINAL_FLUSH_TIMEOUT_S)
        await _cancel_all([flusher])
        if self._held:
            await self._release(list(self._held.values()))
        if self._webhooks is not None:
            await self._webhooks.aclose()
        await _cancel_all(helpers)

    async def _release(self, leases: list[Lease]) -> None:
        async def release() -> int:
            return await self.store.release(leases=leases)

        released = await call_patiently(release, operation="release", timeout_s=RELEASE_TIMEOUT_S)
        if released is not None:
            self._held.clear()
            logger.info(
                "handed back %d unfinished scans (to the queue, or Cancelled where a cancel was pending)",
                released,
                extra={"worker": self.worker_id},
            )

    async def _sleep_unless_stopped(self, delay_s: float) -> None:
        await wait_event(self._stop_event, delay_s)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Worker", "make_worker_id"]
