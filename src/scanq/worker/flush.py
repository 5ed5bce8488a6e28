"""Writing the outcomes of finished attempts: in batches, counted, logged, and summed up every few seconds.

Logging: a failed, retried or cancelled scan is logged one line each; a
successful scan only at DEBUG, because at thousands of scans per second one
INFO line per scan would cost more than the scan itself. ``summary_loop``
reports successes instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sized

from scanq.exceptions import StoreError
from scanq.metrics import WorkerMetrics
from scanq.models import Finish, Lease, Outcome
from scanq.store import Store
from scanq.worker.retry import StoreRetry

logger = logging.getLogger("scanq.worker")

SUMMARY_INTERVAL_S = 10.0
# Outcomes written per store call. Bounded so that on a slow store one write cannot outlast the
# leases it is finishing: heartbeats (which keep renewing leases of unwritten outcomes) get in between.
FINISH_BATCH_MAX = 1000
REFUSED_RESULT_ERROR = "the store refused the result"


class OutcomeWriter:
    """Collects outcomes (``queue``) and writes them with ``store.finish`` from one loop (``run``).

    A flush starts as soon as the loop is idle; outcomes arriving during a
    flush are coalesced into the next one. A written (or refused) outcome's
    lease leaves ``held``.

    Args:
        store: where the outcomes go.
        worker_id: for the log lines.
        held: the worker's leases by scan id, shared with the worker.
        counts: applied outcomes, shared with the worker.
        progress: set after every flush.
        metrics: counts the applied outcomes, if given (may be set until ``run`` starts).
    """

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        held: dict[str, Lease],
        counts: Counter[Outcome],
        progress: asyncio.Event,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.metrics = metrics
        self._held = held
        self._counts = counts
        self._progress = progress
        self._pending: list[Finish] = []
        self._ready = asyncio.Event()
        self._is_closing = False

    def queue(self, finish: Finish) -> None:
        """Have ``finish`` written by the next flush."""
        self._pending.append(finish)
        self._ready.set()

    def close(self) -> None:
        """Let ``run`` return once everything queued is written."""
        self._is_closing = True
        self._ready.set()

    async def run(self) -> None:
        """Write queued outcomes in batches until closed and empty."""
        retry = StoreRetry("finish")
        while True:
            if not self._pending:
                if self._is_closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self._pending = self._pending[:FINISH_BATCH_MAX], self._pending[FINISH_BATCH_MAX:]
            try:
                applied = await self.store.finish(finishes=batch)
            except StoreError as exc:
                self._pending[:0] = batch
                await asyncio.sleep(retry.failed(exc))
                continue
            except Exception:
                logger.error("store finish failed on a batch of %d; writing them one by one", len(batch), exc_info=True)
                await self._finish_one_by_one(batch)
                continue
            retry.succeeded()
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
                candidates.append(Finish(lease=finish.lease, outcome=Outcome.ERROR, error=REFUSED_RESULT_ERROR))
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
                self._drop_held(finish.lease)
        self._progress.set()

    def _record(self, batch: list[Finish], applied: list[bool]) -> None:
        is_debug = logger.isEnabledFor(logging.DEBUG)
        metrics = self.metrics
        held_leases = self._held
        for finish, ok in zip(batch, applied, strict=True):
            lease = finish.lease
            held = held_leases.get(lease.scan_id)  # inlined ``_drop_held``: this loop runs once per scan
            if held is lease or held == lease:
                del held_leases[lease.scan_id]
            if ok and finish.outcome is Outcome.COMPLETE:
                self._counts[Outcome.COMPLETE] += 1
                if metrics is not None:
                    metrics.record_finished(Outcome.COMPLETE)
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
            self._counts[finish.outcome] += 1
            if metrics is not None:
                metrics.record_finished(finish.outcome)
            if finish.outcome is Outcome.RETRY:
                logger.info(
                    "scan %s attempt %d failed, will retry: %s", lease.scan_id, lease.attempt, finish.error, extra=extra
                )
            elif finish.outcome is Outcome.CANCELLED:
                logger.info("scan %s cancelled", lease.scan_id, extra=extra)
            else:
                logger.warning("scan %s failed: %s", lease.scan_id, finish.error, extra=extra)

    def _drop_held(self, lease: Lease) -> None:
        held = self._held.get(lease.scan_id)
        if held is lease or held == lease:
            del self._held[lease.scan_id]

    def _extra(self, lease: Lease) -> dict[str, object]:
        return {"scan_id": lease.scan_id, "worker": self.worker_id, "attempt": lease.attempt}


async def summary_loop(counts: Counter[Outcome], *, running: Sized, worker_id: str) -> None:
    """One INFO line every ``SUMMARY_INTERVAL_S`` with the outcomes counted since the last one.

    Args:
        counts: the worker's applied outcomes.
        running: the worker's running attempts (only their number is logged).
        worker_id: for the log line.
    """
    last: Counter[Outcome] = Counter()
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL_S)
        delta = counts - last
        if delta:
            last = counts.copy()
            parts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(delta.items()))
            logger.info(
                "last %.0fs: %s; %d running", SUMMARY_INTERVAL_S, parts, len(running), extra={"worker": worker_id}
            )


__all__ = ["FINISH_BATCH_MAX", "SUMMARY_INTERVAL_S", "OutcomeWriter", "summary_loop"]
