"""The lease loops across a store outage longer than the lease, on the in-process MemoryStore.

When the store comes back every lease has expired, the live worker's too. The
reaper must leave those to their holder, who renews them first; only leases
nobody renews (a worker that did not come back) are requeued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from scanq.config import Settings
from scanq.exceptions import StoreError, StoreUnavailable
from scanq.models import HeartbeatResult, Lease, Outcome, ScanStatus
from scanq.store.memory import MemoryStore
from scanq.worker.leases import heartbeat_loop, reaper_loop
from scanq.worker.retry import StoreHealth, StoreRetry
from tests.scripted import new_scan

# The heartbeat retries at most a heartbeat period apart, the reaper far more often: without the grace
# after an outage, the reaper nearly always reaches the store first and takes the live lease.
SETTINGS = Settings(lease_seconds=1.0, heartbeat_seconds=0.5, reaper_seconds=0.01)
OUTAGE_S = 1.5  # longer than the lease
GRACE_S = 0.3
DEADLINE_S = 10.0


class OutageStore(MemoryStore):
    """A MemoryStore that is unreachable while ``down``, and records when each call reached it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.down = False
        self.reached: list[tuple[str, float]] = []

    def _call(self, name: str) -> None:
        if self.down:
            raise StoreUnavailable("the test took the store down")
        self.reached.append((name, time.monotonic()))

    async def ping(self) -> None:
        self._call("ping")
        await super().ping()

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        self._call("heartbeat")
        return await super().heartbeat(leases=leases, lease_s=lease_s)

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        self._call("requeue_expired")
        return await super().requeue_expired(limit=limit)


@pytest.fixture
async def store() -> AsyncIterator[OutageStore]:
    async with OutageStore(f"memory://{uuid.uuid4()}") as opened:
        yield opened


async def claim(store: MemoryStore, worker_id: str) -> Lease:
    [scan] = await store.claim(worker_id=worker_id, limit=1, lease_s=SETTINGS.lease_seconds)
    return Lease(scan_id=scan.scan_id, worker_id=worker_id, attempt=scan.attempt)


@pytest.mark.slow
async def test_after_an_outage_longer_than_the_lease_only_the_dead_workers_lease_is_requeued(
    store: OutageStore,
) -> None:
    await store.create_many(scans=[new_scan(), new_scan()])
    alive, dead = await claim(store, "alive"), await claim(store, "dead")
    health = StoreHealth()
    loops = [
        asyncio.create_task(
            heartbeat_loop(
                store=store,
                settings=SETTINGS,
                worker_id="alive",
                running={},
                held={alive.scan_id: alive},
                health=health,
            )
        ),
        asyncio.create_task(
            reaper_loop(
                store=store,
                interval_s=SETTINGS.reaper_seconds,
                worker_id="alive",
                metrics=None,
                health=health,
                grace_s=GRACE_S,
            )
        ),
    ]
    try:
        await asyncio.sleep(0.1)
        store.down = True
        await asyncio.sleep(OUTAGE_S)
        assert health.is_down
        store.down = False
        back = time.monotonic()
        async with asyncio.timeout(DEADLINE_S):
            while (await store.get(scan_id=dead.scan_id)).status == ScanStatus.RUNNING:
                await asyncio.sleep(0.01)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    kept = await store.get(scan_id=alive.scan_id)
    assert (kept.status, kept.lease_owner, kept.attempt) == (ScanStatus.RUNNING, "alive", alive.attempt)
    assert [entry.outcome for entry in kept.history] == [None]
    requeued = await store.get(scan_id=dead.scan_id)
    assert requeued.status == ScanStatus.ACCEPTED
    assert requeued.history[-1].outcome == Outcome.LEASE_EXPIRED
    after = [(name, at) for name, at in store.reached if at >= back]
    first_heartbeat = next(at for name, at in after if name == "heartbeat")
    first_reap = next(at for name, at in after if name == "requeue_expired")
    assert first_heartbeat < first_reap
    assert first_reap - back >= GRACE_S


async def test_without_an_outage_the_reaper_reaps_at_once(store: OutageStore) -> None:
    await store.create(scan=new_scan())
    dead = await claim(store, "dead")
    reaper = asyncio.create_task(
        reaper_loop(store=store, interval_s=0.01, worker_id="w", metrics=None, health=StoreHealth(), grace_s=60.0)
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            while (await store.get(scan_id=dead.scan_id)).status == ScanStatus.RUNNING:
                await asyncio.sleep(0.01)
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper


async def test_store_health_follows_outages_only() -> None:
    health = StoreHealth()
    retry = StoreRetry("test", health=health)
    assert not health.is_down and health.up_for() == float("inf")

    retry.failed(StoreError("a bad statement is no outage"))
    assert not health.is_down
    retry.failed(StoreUnavailable("connection refused"))
    assert health.is_down and health.up_for() == 0.0 and not health.recovered.is_set()
    retry.succeeded()
    assert not health.is_down and health.recovered.is_set()
    assert 0.0 <= health.up_for() < DEADLINE_S
