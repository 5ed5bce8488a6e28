"""Writing the results of delivery attempts: in batches, fenced by their leases, counted and logged.

A write starts as soon as the writer is idle and results arriving meanwhile
go into the next one (one ``Store.record_deliveries`` per batch, not per
delivery). A store outage is ridden out with backoff; a result the store
refuses for any other reason is dropped with an error log, and its delivery
comes back when its lease expires (at-least-once). A result refused by the
fence (the lease expired and another worker took the delivery) is only logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from scanq.backoff import backoff_delay
from scanq.exceptions import StoreError
from scanq.metrics import WorkerMetrics
from scanq.models import DeliveryJob, DeliveryOutcome, DeliveryResult
from scanq.store import Store

logger = logging.getLogger("scanq.webhooks")

RECORD_BATCH_MAX = 1000
RECORD_RETRY_BASE_S = 0.1
RECORD_RETRY_MAX_S = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempted:
    """One attempt's result waiting to be written, with what the logs and metrics need.

    ``latency_s``: from the event to the 2xx, for a delivered one. ``is_sent``: False when the
    attempt was not made (the endpoint was failing or busy), only recorded.
    """

    job: DeliveryJob
    result: DeliveryResult
    latency_s: float | None = None
    is_sent: bool = True


class DeliveryRecorder:
    """Collects results (``queue``) and writes them with ``store.record_deliveries`` from one loop (``run``).

    Args:
        store: where the deliveries are.
        metrics: counts what the store applied, by outcome, and the delivered ones' latency.
    """

    def __init__(self, store: Store, *, metrics: WorkerMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self._pending: list[Attempted] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._is_closing = False

    @property
    def pending(self) -> int:
        """Results not written yet."""
        return len(self._pending)

    def queue(self, attempted: Attempted) -> None:
        """Have ``attempted`` written by the next batch."""
        self._pending.append(attempted)
        self._idle.clear()
        self._ready.set()

    def close(self) -> None:
        """Let ``run`` return once everything queued is written."""
        self._is_closing = True
        self._ready.set()

    async def wait_idle(self) -> None:
        """Until everything queued so far is written (or dropped)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write queued results in batches until closed and empty."""
        failures = 0
        while True:
            if not self._pending:
                self._idle.set()
                if self._is_closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self._pending = self._pending[:RECORD_BATCH_MAX], self._pending[RECORD_BATCH_MAX:]
            try:
                applied = await self.store.record_deliveries(results=[item.result for item in batch])
            except StoreError as exc:
                self._pending[:0] = batch
                failures += 1
                delay = backoff_delay(failures, base_s=RECORD_RETRY_BASE_S, max_s=RECORD_RETRY_MAX_S, full_jitter=False)
                log_store_failure("record_deliveries", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                logger.error(
                    "store refused a batch of %d delivery results; they are sent again when their leases expire",
                    len(batch),
                    exc_info=True,
                )
                continue
            failures = 0
            for item, ok in zip(batch, applied, strict=True):
                self._record(item, ok)

    def _record(self, item: Attempted, ok: bool) -> None:
        result = item.result
        extra = {"endpoint_id": result.endpoint_id, "event_id": result.event_id, "worker": result.worker_id}
        if not ok:
            logger.info(
                "webhook %s event %s: lease lost, result %s discarded (another worker has the delivery)",
                result.endpoint_id,
                result.event_id,
                result.outcome,
                extra=extra,
            )
            return
        if self.metrics is not None:
            self.metrics.record_delivery(result.outcome, latency_s=item.latency_s)
        attempt = item.job.delivery.attempts + 1
        if result.outcome is DeliveryOutcome.DELIVERED:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "webhook %s event %s delivered (HTTP %s, attempt %d)",
                    result.endpoint_id,
                    result.event_id,
                    result.status_code,
                    attempt,
                    extra=extra,
                )
        elif result.outcome is DeliveryOutcome.FAILED:
            logger.warning(
                "webhook %s event %s failed after %d attempts: %s",
                result.endpoint_id,
                result.event_id,
                attempt,
                result.error,
                extra=extra,
            )
        elif item.is_sent:
            logger.info(
                "webhook %s event %s attempt %d failed (%s); next at %s",
                result.endpoint_id,
                result.event_id,
                attempt,
                result.error,
                result.retry_at.isoformat(timespec="seconds") if result.retry_at else "once due",
                extra=extra,
            )
        else:
            logger.debug(
                "webhook %s event %s deferred: %s", result.endpoint_id, result.event_id, result.error, extra=extra
            )


def log_store_failure(operation: str, exc: BaseException, delay_s: float) -> None:
    """A store error (an outage) is a warning; anything else is a bug, logged with its traceback."""
    if isinstance(exc, StoreError):
        logger.warning("store %s failed (%s); retrying in %.2fs", operation, exc, delay_s)
    else:
        logger.error("store %s failed; retrying in %.2fs", operation, delay_s, exc_info=exc)


__all__ = ["RECORD_BATCH_MAX", "Attempted", "DeliveryRecorder", "log_store_failure"]
