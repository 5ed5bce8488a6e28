"""The worker: claims scans in batches, runs them concurrently through scanner plugins, records outcomes.

One asyncio task per running scan, plus five long-lived tasks next to the claim loop:

- claim loop (``run``): claims as many scans as there are free slots, in one
  call; when the queue is empty it sleeps in ``store.wait_for_work`` (woken by
  the store, never a fixed one-second poll);
- heartbeat: renews every held lease in one call, and stops scans whose lease
  was lost (dropped: another attempt owns the scan now) or whose cancel was
  requested (finished as Cancelled);
- reaper: ``store.requeue_expired``, safe on every worker at once;
- flusher: outcomes of finished scans are collected and written in one
  ``store.finish`` call; a flush starts as soon as the flusher is idle and
  outcomes arriving during a flush are coalesced into the next one;
- summary: one INFO line every ``SUMMARY_INTERVAL_S`` with what finished;
- timeouts: one sweep cancels scans running past ``scan_timeout_seconds``.

Logging: a failed, retried or cancelled scan is logged one line each; a
successful scan only at DEBUG, because at thousands of scans per second one
INFO line per scan would cost more than the scan itself. The periodic summary
line reports successes instead.

Shutdown (``stop()``): stop claiming, wait up to ``shutdown_seconds`` for
running scans, cancel the rest and ``store.release`` them (the attempt is not
counted). A second ``stop()`` skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import heapq
import logging
import os
import random
import secrets
import signal
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from scanq.backoff import backoff_delay
from scanq.config import Settings
from scanq.exceptions import ScannerError, StoreError, StoreUnavailable, TransientScanError, UnknownScanner
from scanq.metrics import WorkerMetrics, make_registry, serve_metrics
from scanq.models import Finish, Lease, Outcome, Scan, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.store import Store, open_store

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

STORE_RETRY_BASE_S = 0.1
STORE_RETRY_MAX_S = 5.0
SUMMARY_INTERVAL_S = 10.0
REAPER_BATCH = 1000
CANCEL_GRACE_S = 5.0
FINAL_FLUSH_TIMEOUT_S = 10.0
RELEASE_TIMEOUT_S = 10.0
# A retry becomes claimable at ``retry_at`` by the store's clock; wake a little after it.
RETRY_WAKE_SLACK_S = 0.01
# Scan timeouts are enforced by one sweep at this interval (at most; a quarter of the timeout when shorter)
# instead of a timer per scan: a timer costs more than a no-op scan itself.
TIMEOUT_SWEEP_MAX_S = 1.0
# Outcomes written per store call. Bounded so that on a slow store one write cannot outlast the
# leases it is finishing: heartbeats (which keep renewing leases of unwritten outcomes) get in between.
FINISH_BATCH_MAX = 1000


class _StopReason(enum.Enum):
    CANCEL_REQUESTED = "cancel requested"
    LEASE_LOST = "lease lost"
    TIMED_OUT = "timed out"
    SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class _Running:
    scan: Scan
    lease: Lease
    task: asyncio.Task[Finish]
    started: float
    reason: _StopReason | None = None


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
        metrics: Prometheus counters to update (None: count nothing, the cheapest).
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
        self._running: dict[str, _Running] = {}
        # Every lease this worker still owns: running scans and finished ones whose outcome is not yet written.
        self._held: dict[str, Lease] = {}
        self._pending: list[Finish] = []
        self._is_stopping = False
        self._is_forced = False
        self._is_flush_closing = False
        self._stop_event = asyncio.Event()
        self._progress = asyncio.Event()  # a scan task ended or a flush completed
        self._finish_ready = asyncio.Event()
        # Loop times at which retries this worker scheduled become claimable (a heap): the idle wait ends then.
        self._retry_dues: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None

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
        flusher = asyncio.create_task(self._flush_loop(), name="scanq-flush")
        helpers = [
            asyncio.create_task(self._heartbeat_loop(), name="scanq-heartbeat"),
            asyncio.create_task(self._timeout_loop(), name="scanq-timeouts"),
            asyncio.create_task(self._reaper_loop(), name="scanq-reaper"),
            asyncio.create_task(self._summary_loop(), name="scanq-summary"),
        ]
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
        failures = 0
        while not self._is_stopping:
            # Cleared before the claim, so a scan ending during the claim still wakes the idle wait.
            self._progress.clear()
            free = self.settings.concurrency - len(self._running)
            if free <= 0:
                await self._progress.wait()
                continue
            try:
                scans = await self.store.claim(
                    worker_id=self.worker_id, limit=free, lease_s=self.settings.lease_seconds
                )
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures, base_s=STORE_RETRY_BASE_S, max_s=STORE_RETRY_MAX_S, full_jitter=False)
                _log_store_failure("claim", exc, delay)
                await self._sleep_unless_stopped(delay)
                continue
            failures = 0
            if self._is_stopping:
                # Stopped while claiming: hold them only to release them at shutdown.
                for scan in scans:
                    self._held[scan.scan_id] = _lease_of(scan, self.worker_id)
                return
            for scan in scans:
                self._start(scan)
            if self.metrics is not None and scans:
                self.metrics.record_claimed(scans)
            if len(scans) < free:
                if self.burst and await self._is_drained():
                    return
                await self._idle()

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
            _log_store_failure("stats", exc, 0.0)
            return False
        return stats.counts.get(ScanStatus.ACCEPTED, 0) == 0 and stats.counts.get(ScanStatus.RUNNING, 0) == 0

    # -- running one scan ---------------------------------------------------------------------------

    def _start(self, scan: Scan) -> None:
        loop = self._loop
        assert loop is not None
        lease = _lease_of(scan, self.worker_id)
        old = self._running.get(scan.scan_id)
        if old is not None:
            # The store handed us a newer attempt of a scan we still run: the old attempt's lease is gone.
            old.reason = _StopReason.LEASE_LOST
            old.task.cancel()
        self._held[scan.scan_id] = lease
        task = loop.create_task(self._execute(scan, lease))
        run = _Running(scan=scan, lease=lease, task=task, started=loop.time())
        self._running[scan.scan_id] = run
        task.add_done_callback(functools.partial(self._on_done, run))

    async def _execute(self, scan: Scan, lease: Lease) -> Finish:
        """Run the scanner; turn every outcome except cancellation into a ``Finish``.

        The scan timeout is not enforced here but by ``_timeout_loop``.
        """
        try:
            scanner = self.scanners.get(scan.scanner)
            result = await scanner.run(scan_id=scan.scan_id, target=scan.target, options=scan.options)
        except TransientScanError as exc:
            return self._transient_failure(scan, lease, str(exc) or type(exc).__name__)
        except TimeoutError as exc:  # the scanner's own timeout (a connect, a read): may pass too
            return self._transient_failure(scan, lease, str(exc) or "timed out")
        except (ScannerError, UnknownScanner) as exc:
            return Finish(lease=lease, outcome=Outcome.ERROR, error=str(exc) or type(exc).__name__)
        except Exception as exc:
            logger.error(
                "scan %s: scanner %s crashed",
                scan.scan_id,
                scan.scanner,
                exc_info=True,
                extra={"scan_id": scan.scan_id, "worker": self.worker_id, "attempt": lease.attempt},
            )
            return Finish(lease=lease, outcome=Outcome.ERROR, error=f"{type(exc).__name__}: {exc}")
        # Checked here, per scan: a result the store cannot encode would otherwise fail a whole finish batch.
        try:
            if not isinstance(result, Mapping):
                raise TypeError(f"expected a JSON object, got {type(result).__name__}")
            msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            return Finish(
                lease=lease, outcome=Outcome.ERROR, error=f"scanner {scan.scanner} returned an invalid result: {exc}"
            )
        return Finish(lease=lease, outcome=Outcome.COMPLETE, result=result)

    def _transient_failure(self, scan: Scan, lease: Lease, error: str) -> Finish:
        if lease.attempt >= scan.max_attempts:
            return Finish(lease=lease, outcome=Outcome.ERROR, error=error)
        delay = backoff_delay(
            lease.attempt, base_s=self.settings.retry_base_seconds, max_s=self.settings.retry_max_seconds
        )
        assert self._loop is not None
        heapq.heappush(self._retry_dues, self._loop.time() + delay)
        return Finish(
            lease=lease,
            outcome=Outcome.RETRY,
            error=error,
            retry_at=datetime.now(UTC) + timedelta(seconds=delay),
        )

    def _on_done(self, run: _Running, task: asyncio.Task[Finish]) -> None:
        scan_id = run.lease.scan_id
        if self._running.get(scan_id) is run:
            del self._running[scan_id]
        self._progress.set()
        if self.metrics is not None and self._loop is not None:
            self.metrics.record_run_time(self._loop.time() - run.started)
        if run.reason is _StopReason.LEASE_LOST:
            if self._held.get(scan_id) == run.lease:
                del self._held[scan_id]
            return
        if task.cancelled():
            if run.reason is _StopReason.CANCEL_REQUESTED:
                self._queue_finish(Finish(lease=run.lease, outcome=Outcome.CANCELLED))
            elif run.reason is _StopReason.TIMED_OUT:
                error = f"scan timed out after {self.settings.scan_timeout_seconds:g}s"
                self._queue_finish(self._transient_failure(run.scan, run.lease, error))
            # Otherwise (shutdown) the lease stays held and is released at the end of the shutdown.
            return
        exc = task.exception()
        if exc is not None:  # only a BaseException that is not an Exception gets here
            self._queue_finish(Finish(lease=run.lease, outcome=Outcome.ERROR, error=f"{type(exc).__name__}: {exc}"))
            return
        self._queue_finish(task.result())

    def _queue_finish(self, finish: Finish) -> None:
        self._pending.append(finish)
        self._finish_ready.set()

    # -- background loops ---------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        """Write finished outcomes in batches: at once when idle, coalescing whatever arrives during a flush."""
        failures = 0
        while True:
            if not self._pending:
                if self._is_flush_closing:
                    return
                self._finish_ready.clear()
                await self._finish_ready.wait()
                continue
            batch, self._pending = self._pending[:FINISH_BATCH_MAX], self._pending[FINISH_BATCH_MAX:]
            try:
                applied = await self.store.finish(finishes=batch)
            except StoreError as exc:
                self._pending[:0] = batch
                failures += 1
                delay = backoff_delay(failures, base_s=STORE_RETRY_BASE_S, max_s=STORE_RETRY_MAX_S, full_jitter=False)
                _log_store_failure("finish", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                logger.error("store finish failed on a batch of %d; writing them one by one", len(batch), exc_info=True)
                await self._finish_one_by_one(batch)
                continue
            failures = 0
            self._record(batch, applied)
            self._progress.set()

    async def _finish_one_by_one(self, batch: list[Finish]) -> None:
        """Isolate the outcome the store refuses (not an outage: bad data or a bug) so the others get written.

        A refused Complete is recorded as Error instead; anything still refused is
        dropped, and its lease expires and the reaper requeues the scan.
        """
        for index, finish in enumerate(batch):
            candidates = [finish]
            if finish.outcome is Outcome.COMPLETE:
                candidates.append(
                    Finish(lease=finish.lease, outcome=Outcome.ERROR, error="the store refused the result")
                )
            for candidate in candidates:
                try:
                    applied = await self.store.finish(finishes=[candidate])
                except StoreError:  # an outage after all: the flush loop retries the rest with backoff
                    self._pending[:0] = batch[index:]
                    return
                except Exception:
                    logger.error(
                        "store refused outcome %s of scan %s",
                        candidate.outcome,
                        candidate.lease.scan_id,
                        exc_info=True,
                        extra=self._extra(candidate.lease),
                    )
                    continue
                self._record([candidate], applied)
                break
            else:
                held = self._held.get(finish.lease.scan_id)
                if held is finish.lease or held == finish.lease:
                    del self._held[finish.lease.scan_id]
        self._progress.set()

    def _record(self, batch: list[Finish], applied: list[bool]) -> None:
        is_debug = logger.isEnabledFor(logging.DEBUG)
        for finish, ok in zip(batch, applied, strict=True):
            lease = finish.lease
            held = self._held.get(lease.scan_id)
            if held is lease or held == lease:
                del self._held[lease.scan_id]
            if ok and finish.outcome is Outcome.COMPLETE:
                self.counts[Outcome.COMPLETE] += 1
                if self.metrics is not None:
                    self.metrics.record_finished(Outcome.COMPLETE)
                if is_debug:
                    logger.debug("scan %s complete", lease.scan_id, extra=self._extra(lease))
                continue
            extra = self._extra(lease)
            if not ok:
                logger.warning(
                    "scan %s attempt %d: lease lost, outcome %s discarded",
                    lease.scan_id,
                    lease.attempt,
                    finish.outcome,
                    extra=extra,
                )
                continue
            self.counts[finish.outcome] += 1
            if self.metrics is not None:
                self.metrics.record_finished(finish.outcome)
            if finish.outcome is Outcome.RETRY:
                logger.info(
                    "scan %s attempt %d failed, will retry: %s", lease.scan_id, lease.attempt, finish.error, extra=extra
                )
            elif finish.outcome is Outcome.CANCELLED:
                logger.info("scan %s cancelled", lease.scan_id, extra=extra)
            else:
                logger.warning("scan %s failed: %s", lease.scan_id, finish.error, extra=extra)

    def _extra(self, lease: Lease) -> dict[str, object]:
        return {"scan_id": lease.scan_id, "worker": self.worker_id, "attempt": lease.attempt}

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_seconds
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(min(interval, backoff_delay(failures, base_s=0.5, max_s=interval)))
            else:
                await asyncio.sleep(interval)
            sent = dict(self._held)
            if not sent:
                continue
            try:
                answer = await self.store.heartbeat(leases=list(sent.values()), lease_s=self.settings.lease_seconds)
            except Exception as exc:
                failures += 1
                _log_store_failure("heartbeat", exc, 0.0)
                continue
            failures = 0
            for scan_id in answer.lost:
                run = self._running.get(scan_id)
                # Ignore scans that finished (or were claimed again) while the heartbeat was in flight.
                if run is None or run.lease != sent.get(scan_id):
                    continue
                logger.warning(
                    "scan %s attempt %d: lease lost, stopping it",
                    scan_id,
                    run.lease.attempt,
                    extra={"scan_id": scan_id, "worker": self.worker_id, "attempt": run.lease.attempt},
                )
                run.reason = _StopReason.LEASE_LOST
                run.task.cancel()
            for scan_id in answer.cancel_requested:
                run = self._running.get(scan_id)
                if run is not None and run.reason is None and run.lease == sent.get(scan_id):
                    run.reason = _StopReason.CANCEL_REQUESTED
                    run.task.cancel()

    async def _timeout_loop(self) -> None:
        timeout_s = self.settings.scan_timeout_seconds
        interval = min(TIMEOUT_SWEEP_MAX_S, timeout_s / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            overdue = loop.time() - timeout_s
            for run in list(self._running.values()):
                if run.reason is None and run.started <= overdue:
                    run.reason = _StopReason.TIMED_OUT
                    run.task.cancel()

    async def _reaper_loop(self) -> None:
        interval = self.settings.reaper_seconds
        # Spread the reapers of workers started together.
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            try:
                count = await self.store.requeue_expired(limit=REAPER_BATCH)
            except Exception as exc:
                _log_store_failure("requeue_expired", exc, interval)
                count = 0
            if count:
                logger.info("requeued %d scans whose lease expired", count, extra={"worker": self.worker_id})
                if self.metrics is not None:
                    self.metrics.record_lease_expired(count)
            if count < REAPER_BATCH:
                await asyncio.sleep(interval)

    async def _summary_loop(self) -> None:
        last: Counter[Outcome] = Counter()
        while True:
            await asyncio.sleep(SUMMARY_INTERVAL_S)
            delta = self.counts - last
            if delta:
                last = self.counts.copy()
                parts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(delta.items()))
                logger.info(
                    "last %.0fs: %s; %d running",
                    SUMMARY_INTERVAL_S,
                    parts,
                    len(self._running),
                    extra={"worker": self.worker_id},
                )

    # -- shutdown -----------------------------------------------------------------------------------

    async def _shutdown(self, *, flusher: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
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
                await _wait_event(self._progress, remaining)
        if self._running:
            tasks = []
            for run in self._running.values():
                if run.reason is None:
                    run.reason = _StopReason.SHUTDOWN
                run.task.cancel()
                tasks.append(run.task)
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)
        self._is_flush_closing = True
        self._finish_ready.set()
        await asyncio.wait([flusher], timeout=FINAL_FLUSH_TIMEOUT_S)
        await _cancel_all([flusher])
        if self._held:
            await self._release(list(self._held.values()))
        await _cancel_all(helpers)

    async def _release(self, leases: list[Lease]) -> None:
        async def attempt() -> int:
            return await self.store.release(leases=leases)

        released = await _retry_until(attempt, timeout_s=RELEASE_TIMEOUT_S, what="release")
        if released is not None:
            self._held.clear()
            logger.info(
                "handed back %d unfinished scans (to the queue, or Cancelled where a cancel was pending)",
                released,
                extra={"worker": self.worker_id},
            )

    async def _sleep_unless_stopped(self, delay_s: float) -> None:
        await _wait_event(self._stop_event, delay_s)


def _lease_of(scan: Scan, worker_id: str) -> Lease:
    return Lease(scan_id=scan.scan_id, worker_id=worker_id, attempt=scan.attempt)


def _log_store_failure(operation: str, exc: Exception, delay_s: float) -> None:
    if isinstance(exc, StoreError):
        logger.warning("store %s failed (%s); retrying in %.2fs", operation, exc, delay_s)
    else:
        logger.error("store %s failed; retrying in %.2fs", operation, delay_s, exc_info=exc)


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _retry_until(operation: Callable[[], Awaitable[_T]], *, timeout_s: float, what: str) -> _T | None:
    """Call ``operation`` until it succeeds or ``timeout_s`` passed (then log and return None)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    failures = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            failures += 1
            delay = backoff_delay(failures, base_s=STORE_RETRY_BASE_S, max_s=STORE_RETRY_MAX_S, full_jitter=False)
            if loop.time() + delay > deadline:
                logger.error("store %s failed, giving up: %s", what, exc)
                return None
            _log_store_failure(what, exc, delay)
            await asyncio.sleep(delay)


async def run_worker(settings: Settings, *, burst: bool = False) -> Worker | None:
    """Open the store and run one worker until SIGINT/SIGTERM (or drained, with ``burst``); return it.

    A store that cannot be reached at start is retried with backoff (a worker
    may well start before its database); a signal meanwhile returns None.

    Args:
        settings: the process settings.
        burst: drain the queue and return instead of waiting for more work.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    worker: Worker | None = None

    def on_signal() -> None:
        stopped.set()
        if worker is not None:
            worker.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        store = await _open_store_patiently(settings.database_url, stopped=stopped)
        if store is None:
            return None
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(store.aclose)
            worker_id = make_worker_id()
            metrics = None
            if settings.metrics_port:
                registry = make_registry()
                metrics = WorkerMetrics(
                    registry, worker_id=worker_id, in_flight=lambda: worker.running if worker else 0
                )
                await stack.enter_async_context(serve_metrics(registry, host=settings.host, port=settings.metrics_port))
            worker = Worker(
                store, ScannerRegistry(settings), settings, worker_id=worker_id, burst=burst, metrics=metrics
            )
            if stopped.is_set():
                worker.stop()
            await worker.run()
            return worker
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _open_store_patiently(url: str, *, stopped: asyncio.Event) -> Store | None:
    """An open store for ``url``, retrying while it is unavailable; None if ``stopped`` is set first."""
    failures = 0
    while not stopped.is_set():
        store = open_store(url)
        try:
            await store.open()
        except StoreUnavailable as exc:
            failures += 1
            delay = backoff_delay(failures, base_s=STORE_RETRY_BASE_S, max_s=STORE_RETRY_MAX_S, full_jitter=False)
            _log_store_failure("open", exc, delay)
            await _wait_event(stopped, delay)
            continue
        return store
    return None


async def check_store(settings: Settings) -> bool:
    """True when the store at ``settings.database_url`` opens and answers a ping (``scanq worker --check``)."""
    try:
        async with open_store(settings.database_url) as store:
            await store.ping()
    except Exception as exc:
        logger.error("store unreachable: %s", exc)
        return False
    return True
