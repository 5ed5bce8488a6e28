"""The delivery loop: claim due deliveries, send them concurrently, record the results in batches.

Every worker runs one. It claims with ``Store.claim_deliveries`` when the
dispatcher of its own process wakes it (``wake``), else every ``POLL_S`` (the
dispatcher may be another process's, and retries fall due) or when a retry it
scheduled itself falls due. Each claimed delivery is leased to this worker
for ``lease_s``, longer than any attempt can take (see ``lease_for``), so no
renewal is needed; a worker killed with its deliveries claimed leaves them
to come back when their leases expire: at-least-once, receivers deduplicate
on ``webhook-id``.

Sending is bounded twice: ``concurrency`` attempts at once in all, and a
quarter of that (``ENDPOINT_SHARE``) to any one endpoint, so an endpoint that
is slow or down can never take every slot. A delivery whose endpoint is at
its bound waits in this worker, in order, for at most ``QUEUE_WAIT_MAX_S``;
after that (the endpoint is too slow for what is due) it is recorded as an
attempt not made and retried on the schedule, so no endpoint can hold a
worker's claims either. An endpoint whose last attempt failed gets one
attempt at a time until one succeeds: what is claimed for it meanwhile is
recorded at once as not sent ("the endpoint is failing"), with the schedule's
backoff. So a dead endpoint costs a store write per delivery per backoff step,
and the others never wait for it. A callback (``Delivery.url``, its scan's own URL) is
bounded per origin it goes to: one dead callback receiver holds up only its own callbacks.

Scans come first: while the worker drains a backlog (``busy()``: its last
claim came back full), at most ``BUSY_CONCURRENCY`` attempts are in flight
and only as many are claimed, so a flood of events never takes the CPU the
scans need; the deliveries catch up once the backlog is gone.

Results go to the ``DeliveryRecorder`` (one fenced ``record_deliveries`` per
batch). A graceful stop records the deliveries not started as not sent (due
again soon, for any worker), lets the attempts in flight finish for a moment
and leaves the rest to their leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from scanq.backoff import backoff_delay
from scanq.metrics import WorkerMetrics
from scanq.models import DeliveryJob, DeliveryOutcome
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE
from scanq.webhooks.payload import SharedBody
from scanq.webhooks.recorder import Attempted, DeliveryRecorder, log_store_failure
from scanq.webhooks.schedule import RetrySchedule
from scanq.webhooks.sender import Sender, SendResult
from scanq.webhooks.signing import webhook_headers

logger = logging.getLogger("scanq.webhooks")

# One endpoint gets at most concurrency / ENDPOINT_SHARE attempts at once (at least one).
ENDPOINT_SHARE = 4
# Attempts in flight at once while the worker drains a backlog of scans (``busy``).
BUSY_CONCURRENCY = 4
# Claimed deliveries held (sending or waiting) by one worker, as a multiple of its concurrency.
HELD_PER_SLOT = 2
# A delivery waits this long at most in the worker for its endpoint's turn; the waits are checked this often.
QUEUE_WAIT_MAX_S = 1.0
QUEUE_SWEEP_S = 0.25
# Claims without a wake-up: other processes' dispatches and retries that fell due.
POLL_S = 1.0
# A retry this worker scheduled is claimed a little after it is due (the store's clock decides); the retries
# due within this window are claimed together.
RETRY_WAKE_SLACK_S = 0.05
# Every dispatch wakes the loop, also one that made no delivery (scan events no endpoint wants): after this
# many wake-ups in a row whose claim found nothing, claims on a wake-up are spaced by WAKE_THROTTLE_S.
EMPTY_WAKES_BEFORE_THROTTLE = 8
WAKE_THROTTLE_S = 0.1
CLAIM_RETRY_BASE_S = 0.1
CLAIM_RETRY_MAX_S = 5.0
# After a stop, attempts in flight get this long at most to finish; results then get this long to be written.
STOP_SEND_GRACE_S = 5.0
STOP_RECORD_TIMEOUT_S = 10.0


def lease_for(sender: Sender) -> float:
    """A lease no held delivery outlives: its wait in the worker, reading its scan, one attempt; twice that."""
    busy = QUEUE_WAIT_MAX_S + QUEUE_SWEEP_S + sender.connect_timeout_s + sender.attempt_bound_s
    return 2 * busy


@dataclass(eq=False, kw_only=True, slots=True)
class _Held:
    job: DeliveryJob
    claimed_at: float  # the event loop's clock
    body: SharedBody

    @property
    def key(self) -> tuple[str, str]:
        return self.job.delivery.endpoint_id, self.job.delivery.event.event_id

    @property
    def url(self) -> str | None:
        """Where it goes: a callback's own URL, else its endpoint's."""
        return self.job.delivery.url or self.job.endpoint.url

    @property
    def destination(self) -> str:
        """What the per-endpoint bounds count: the endpoint, and for a callback the origin it goes to."""
        endpoint_id = self.job.endpoint.endpoint_id
        url = self.job.delivery.url
        if url is None:
            return endpoint_id
        parts = urlsplit(url)
        return f"{endpoint_id} {parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(eq=False, slots=True)
class _Endpoint:
    endpoint_id: str  # the destination (``_Held.destination``)
    in_flight: int = 0
    waiting: deque[_Held] = field(default_factory=deque)
    failing: str | None = None  # the last attempt's error, until one succeeds


class DeliveryLoop:
    """Claims, sends and records webhook deliveries for one worker until ``stop()``.

    Args:
        store: where the deliveries are.
        sender: makes one attempt (SSRF checks, pinned connection, timeouts).
        schedule: what a result makes of the delivery (retry or fail, when).
        worker_id: the lease owner.
        concurrency: attempts in flight at once (``--webhook-concurrency``).
        lease_s: how long each claim is held (default ``lease_for(sender)``).
        metrics: deliveries by outcome, latency; None: count nothing.
        poll_s: the claim interval without a wake-up.
        busy: True while the worker drains a backlog of scans (then ``BUSY_CONCURRENCY`` at most); None: never.
    """

    def __init__(
        self,
        store: Store,
        *,
        sender: Sender,
        schedule: RetrySchedule,
        worker_id: str,
        concurrency: int,
        lease_s: float | None = None,
        metrics: WorkerMetrics | None = None,
        poll_s: float = POLL_S,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.schedule = schedule
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.per_endpoint = max(1, concurrency // ENDPOINT_SHARE)
        self.lease_s = lease_s if lease_s is not None else lease_for(sender)
        self.poll_s = poll_s
        self._busy = busy
        self.recorder = DeliveryRecorder(store, metrics=metrics)
        self._held: dict[tuple[str, str], _Held] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._retry_dues: list[float] = []  # loop times when retries this worker scheduled fall due (a heap)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._stop = asyncio.Event()
        self._empty_wakes = 0  # wake-ups in a row whose claim found nothing

    @property
    def slots(self) -> int:
        """Attempts allowed in flight now: ``concurrency``, or ``BUSY_CONCURRENCY`` while scans come first."""
        if self._busy is not None and self._busy():
            return min(self.concurrency, BUSY_CONCURRENCY)
        return self.concurrency

    @property
    def held(self) -> int:
        """Deliveries claimed by this worker and not yet handed to the recorder."""
        return len(self._held)

    def wake(self) -> None:
        """New deliveries may be due (the dispatcher of this process made some): claim now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; ``run`` then winds down (see the module docstring)."""
        self._stop.set()

    async def run(self) -> None:
        """Claim and deliver until ``stop()``; then record what was not started and let the rest finish briefly."""
        recorder = asyncio.create_task(self.recorder.run(), name="scanq-webhook-recorder")
        sweeper = asyncio.create_task(self._sweep_loop(), name="scanq-webhook-sweep")
        try:
            await self._claim_loop()
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
            await self._wind_down(recorder)

    # -- claiming -----------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self._progress.clear()
            limit = min(MAX_PAGE_SIZE, HELD_PER_SLOT * self.slots - len(self._held))
            if limit <= 0:
                await self._wait(self._progress, self.poll_s)
                continue
            # Cleared before the claim: a dispatch during it wakes the next wait at once.
            self._wake.clear()
            try:
                jobs = await self.store.claim_deliveries(worker_id=self.worker_id, limit=limit, lease_s=self.lease_s)
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures, base_s=CLAIM_RETRY_BASE_S, max_s=CLAIM_RETRY_MAX_S, full_jitter=False)
                log_store_failure("claim_deliveries", exc, delay)
                await self._wait(self._stop, delay)
                continue
            failures = 0
            self._empty_wakes = 0 if jobs else self._empty_wakes + 1
            self._take(jobs)
            if len(jobs) < limit:
                await self._idle(loop)

    async def _idle(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        timeout = self.poll_s
        if self._retry_dues:
            if self._retry_dues[0] <= now:
                while self._retry_dues and self._retry_dues[0] <= now + RETRY_WAKE_SLACK_S:
                    heapq.heappop(self._retry_dues)
                return
            timeout = min(timeout, self._retry_dues[0] - now + RETRY_WAKE_SLACK_S)
        if self._empty_wakes >= EMPTY_WAKES_BEFORE_THROTTLE:
            # Events nobody subscribes to keep waking us: claim on a wake-up at most every WAKE_THROTTLE_S.
            await self._wait(self._stop, min(timeout, WAKE_THROTTLE_S))
            timeout -= WAKE_THROTTLE_S
            if timeout <= 0 or self._wake.is_set():
                return
        await self._wait(self._wake, timeout)

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> None:
        """Until ``event`` or a stop, at most ``timeout_s``."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _take(self, jobs: list[DeliveryJob]) -> None:
        """Hold the claimed jobs; one body per event, shared by its endpoints; offer each to its endpoint."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        bodies: dict[str, SharedBody] = {}
        for job in jobs:
            event = job.delivery.event
            body = bodies.get(event.event_id)
            if body is None:
                body = bodies[event.event_id] = SharedBody(self.store, event, timeout_s=self.sender.connect_timeout_s)
            held = _Held(job=job, claimed_at=now, body=body)
            if held.key in self._held:  # a lease of ours expired and we claimed it again: one attempt is enough
                continue
            self._held[held.key] = held
            self._offer(held)

    # -- sending ------------------------------------------------------------------------------------

    def _offer(self, held: _Held) -> None:
        endpoint_id = held.destination
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            endpoint = self._endpoints[endpoint_id] = _Endpoint(endpoint_id)
        if endpoint.failing is not None and endpoint.in_flight > 0:
            self._defer(held, f"not sent: the endpoint is failing ({endpoint.failing})")
        elif endpoint.in_flight < self.per_endpoint and len(self._sending) < self.slots and not endpoint.waiting:
            self._start(held, endpoint)
        else:
            endpoint.waiting.append(held)

    def _start(self, held: _Held, endpoint: _Endpoint) -> None:
        endpoint.in_flight += 1
        task = asyncio.create_task(self._attempt(held, endpoint), name="scanq-webhook-send")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _attempt(self, held: _Held, endpoint: _Endpoint) -> None:
        job = held.job
        try:
            try:
                body = await held.body.get()
            except Exception as exc:  # the scan could not be read (a store outage): the lease brings it back
                log_store_failure("get (the scan of a webhook)", exc, self.lease_s)
                self._release(held)
                return
            now = datetime.now(UTC)
            headers = webhook_headers(job.endpoint, message_id=job.delivery.event.event_id, body=body, now=now)
            url = held.url
            try:
                if url is None:  # a callback endpoint's delivery without the scan's URL: nowhere to send it
                    sent = SendResult(error="no URL to deliver to")
                else:
                    sent = await self.sender.send(url, headers=headers, body=body)
            except Exception as exc:  # a bug, not the endpoint: recorded, so the delivery is not stuck here
                logger.error("webhook %s: the attempt failed", job.endpoint.endpoint_id, exc_info=exc)
                sent = SendResult(error=f"internal error: {type(exc).__name__}")
        finally:
            endpoint.in_flight -= 1
        endpoint.failing = None if sent.is_delivered else (sent.error or f"HTTP {sent.status_code}")
        self._finish(held, sent, is_sent=True)
        if endpoint.failing is not None:
            while endpoint.waiting:
                waiting = endpoint.waiting.popleft()
                self._defer(waiting, f"not sent: the endpoint is failing ({endpoint.failing})")
        self._pump()

    def _pump(self) -> None:
        """Start waiting deliveries while there are free slots, one endpoint after another."""
        for endpoint in list(self._endpoints.values()):
            while endpoint.waiting and endpoint.in_flight < self.per_endpoint and len(self._sending) < self.slots:
                if endpoint.failing is not None and endpoint.in_flight > 0:
                    break
                self._start(endpoint.waiting.popleft(), endpoint)
            if not endpoint.waiting and endpoint.in_flight == 0 and endpoint.failing is None:
                # Forget idle healthy endpoints; a failing one is remembered until an attempt succeeds.
                del self._endpoints[endpoint.endpoint_id]

    def _defer(self, held: _Held, why: str) -> None:
        """Record an attempt not made: retried on the schedule, by whichever worker claims it then."""
        self._finish(held, SendResult(error=why), is_sent=False)

    def _finish(self, held: _Held, sent: SendResult, *, is_sent: bool) -> None:
        job = held.job
        now = datetime.now(UTC)
        result = self.schedule.result(job, sent, now=now)
        latency = None
        if result.outcome is DeliveryOutcome.DELIVERED:
            latency = (now - job.delivery.event.at).total_seconds()
        elif result.outcome is DeliveryOutcome.RETRY and result.retry_at is not None:
            delay = max(0.0, (result.retry_at - now).total_seconds())
            if delay < self.poll_s:  # a later one is found by the poll soon enough
                heapq.heappush(self._retry_dues, asyncio.get_running_loop().time() + delay)
        self.recorder.queue(Attempted(job=job, result=result, latency_s=latency, is_sent=is_sent))
        self._release(held)

    def _release(self, held: _Held) -> None:
        if self._held.get(held.key) is held:
            del self._held[held.key]
        self._progress.set()

    async def _sweep_loop(self) -> None:
        """Defer the deliveries that waited too long for their endpoint (it is too slow for what is due)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(QUEUE_SWEEP_S)
            overdue = loop.time() - QUEUE_WAIT_MAX_S
            for endpoint in list(self._endpoints.values()):
                while endpoint.waiting and endpoint.waiting[0].claimed_at <= overdue:
                    held = endpoint.waiting.popleft()
                    self._defer(
                        held,
                        f"not sent: waited {QUEUE_WAIT_MAX_S:g}s behind {endpoint.in_flight} attempts in flight "
                        f"to this endpoint ({len(self._sending)} in all)",
                    )
            self._pump()

    # -- stopping -----------------------------------------------------------------------------------

    async def _wind_down(self, recorder: asyncio.Task[None]) -> None:
        for endpoint in list(self._endpoints.values()):
            while endpoint.waiting:
                self._defer(endpoint.waiting.popleft(), "not sent: the worker was stopping")
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=min(STOP_SEND_GRACE_S, self.sender.attempt_bound_s))
        for task in set(self._sending):
            task.cancel()  # not recorded: the lease brings it back
        await asyncio.gather(*self._sending, return_exceptions=True)
        self.recorder.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_RECORD_TIMEOUT_S):
                await asyncio.shield(recorder)
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        if self.recorder.pending:
            logger.warning(
                "webhooks: %d delivery results not written at stop; they are sent again when their leases expire",
                self.recorder.pending,
                extra={"worker": self.worker_id},
            )


__all__ = ["ENDPOINT_SHARE", "POLL_S", "QUEUE_WAIT_MAX_S", "DeliveryLoop", "lease_for"]
