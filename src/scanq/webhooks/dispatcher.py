"""The dispatcher: one worker at a time turns new scan events into webhook deliveries.

Every worker runs ``Dispatcher.run``; only the holder of the store's webhook
role (``Store.lead``, ``WEBHOOK_ROLE``) dispatches, so the dispatch cursor
moves in order. The others ask again every ``RENEW_S`` and take over when the
holder's term ends (a worker that died) or it resigns (a worker that stopped).
The holder calls ``Store.dispatch_events`` (each settled event after the
cursor becomes one pending delivery per subscribed endpoint, in one write)
until it finds nothing new, then sleeps in ``Store.wait_for_events`` (woken by
any process's transition, never a fixed poll); a wake-up is followed by a
``COALESCE_S`` pause so that a burst of transitions is dispatched in one call.
After each dispatch that made deliveries it wakes this process's delivery
loop (``on_dispatched``), so a delivery starts milliseconds after its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from scanq.backoff import backoff_delay
from scanq.metrics import WorkerMetrics
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE, WEBHOOK_ROLE
from scanq.webhooks.recorder import log_store_failure

logger = logging.getLogger("scanq.webhooks")

# The holder renews its term every RENEW_S; a holder that stops renewing hands the role on after TERM_S.
TERM_S = 10.0
RENEW_S = 2.5
# After a wake-up, wait this long for the rest of a burst of transitions before dispatching.
COALESCE_S = 0.01
DISPATCH_BATCH = MAX_PAGE_SIZE
RETRY_BASE_S = 0.1
RETRY_MAX_S = 5.0
RESIGN_TIMEOUT_S = 5.0


class Dispatcher:
    """Dispatches scan events while this worker holds the webhook role; asks for the role otherwise.

    Args:
        store: where the events, endpoints and deliveries are.
        owner: this worker's id (the role's owner).
        on_dispatched: called with the number of events passed, after each dispatch that passed any.
        metrics: counts the events dispatched; None: count nothing.
        term_s: the role's term; renewed every ``renew_s``.
        renew_s: how often the holder renews (and others ask).
        coalesce_s: the pause after a wake-up.
    """

    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        on_dispatched: Callable[[int], None] = lambda count: None,
        metrics: WorkerMetrics | None = None,
        term_s: float = TERM_S,
        renew_s: float = RENEW_S,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        self.store = store
        self.owner = owner
        self.on_dispatched = on_dispatched
        self.metrics = metrics
        self.term_s = term_s
        self.renew_s = renew_s
        self.coalesce_s = coalesce_s
        self.is_leader = False
        self._failures = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """End ``run`` (it resigns the role): every wait of the loop ends on it, not only on a cancel."""
        self._stop.set()

    async def run(self) -> None:
        """Until ``stop()`` (or cancelled); then resign the role if held, so another worker takes over at once."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                renew_at = loop.time() + self.renew_s
                if await self._lead():
                    await self._dispatch_until(renew_at)
                if (remaining := renew_at - loop.time()) > 0:
                    await self._sleep(remaining)
        finally:
            if self.is_leader:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(RESIGN_TIMEOUT_S):
                        await self.store.resign(role=WEBHOOK_ROLE, owner=self.owner)

    async def _lead(self) -> bool:
        try:
            is_leader = await self.store.lead(role=WEBHOOK_ROLE, owner=self.owner, term_s=self.term_s)
        except Exception as exc:
            self._failed("lead", exc)
            is_leader = False
        if is_leader != self.is_leader:
            logger.info(
                "webhooks: %s dispatching scan events",
                "this worker is" if is_leader else "this worker stopped",
                extra={"worker": self.owner},
            )
            self.is_leader = is_leader
        return is_leader

    async def _dispatch_until(self, renew_at: float) -> None:
        """Dispatch, then wait for events, until it is time to renew the role."""
        loop = asyncio.get_running_loop()
        while (remaining := renew_at - loop.time()) > 0 and not self._stop.is_set():
            try:
                count = await self.store.dispatch_events(owner=self.owner, limit=DISPATCH_BATCH)
            except Exception as exc:
                await self._sleep(min(self._failed("dispatch_events", exc), remaining))
                continue
            self._failures = 0
            if count:
                if self.metrics is not None:
                    self.metrics.record_dispatched(count)
                self.on_dispatched(count)
                if count >= DISPATCH_BATCH:
                    continue
            try:
                await self._wait_for_events(remaining)
            except Exception as exc:
                await self._sleep(min(self._failed("wait_for_events", exc), max(0.0, renew_at - loop.time())))
                continue
            await self._sleep(self.coalesce_s)

    async def _wait_for_events(self, timeout_s: float) -> None:
        """``store.wait_for_events``, cut short by ``stop()``."""
        waiters = [
            asyncio.ensure_future(self.store.wait_for_events(timeout_s=timeout_s)),
            asyncio.ensure_future(self._stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        for future in done:
            if not future.cancelled() and (exc := future.exception()) is not None:
                raise exc

    async def _sleep(self, delay_s: float) -> None:
        """Sleep ``delay_s``, less if ``stop()`` comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stop.wait()

    def _failed(self, operation: str, exc: Exception) -> float:
        self._failures += 1
        delay = backoff_delay(self._failures, base_s=RETRY_BASE_S, max_s=RETRY_MAX_S, full_jitter=False)
        log_store_failure(operation, exc, delay)
        return delay


__all__ = ["COALESCE_S", "RENEW_S", "TERM_S", "Dispatcher"]
