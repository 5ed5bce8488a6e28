"""The worker in-process against every real store: outcomes, retries, timeout, cancel, shutdown, heartbeat, outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from scanq.config import Settings
from scanq.exceptions import StoreUnavailable
from scanq.models import Outcome, Scan, ScanStatus
from scanq.store import Store, open_store
from scanq.worker import Worker
from tests.scripted import ScriptedScanner, new_scan, scripted_registry

FAST: dict[str, Any] = {
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.1,
    "reaper_seconds": 0.1,
    "poll_seconds": 0.2,
    "retry_base_seconds": 0.02,
    "retry_max_seconds": 0.1,
    "shutdown_seconds": 0.3,
}
DEADLINE_S = 20.0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url) as opened:
        yield opened


def settings(**changes: Any) -> Settings:
    return Settings(**{**FAST, **changes})


async def drain(store: Store, cfg: Settings) -> tuple[Worker, ScriptedScanner]:
    registry, scanner = scripted_registry(cfg)
    worker = Worker(store, registry, cfg, burst=True)
    await asyncio.wait_for(worker.run(), DEADLINE_S)
    return worker, scanner


async def wait_until_status(store: Store, scan_id: str, status: ScanStatus) -> Scan:
    async with asyncio.timeout(DEADLINE_S):
        while (scan := await store.get(scan_id=scan_id)).status != status:
            await asyncio.sleep(0.02)
    return scan


def outcomes(scan: Scan) -> Sequence[Outcome | None]:
    return [entry.outcome for entry in scan.history]


async def test_completes_every_scan_once(store: Store) -> None:
    created = await store.create_many(scans=[new_scan() for _ in range(30)])

    worker, scanner = await drain(store, settings(concurrency=8))

    for c in created:
        scan = await store.get(scan_id=c.scan.scan_id)
        assert scan.status == ScanStatus.COMPLETE
        assert scan.result == {"scanner": "scripted", "runs": 1}
        assert outcomes(scan) == [Outcome.COMPLETE]
        assert scan.history[0].worker == worker.worker_id
        assert scan.lease_owner is None
    assert sum(scanner.runs.values()) == 30
    assert worker.counts == {Outcome.COMPLETE: 30}


async def test_transient_failures_retry_with_backoff_then_error(store: Store) -> None:
    created = await store.create(scan=new_scan(fail="transient", max_attempts=3))

    _, scanner = await drain(store, settings())

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.ERROR
    assert scan.error == "transient failure 3"
    assert scan.attempt == 3
    assert outcomes(scan) == [Outcome.RETRY, Outcome.RETRY, Outcome.ERROR]
    assert [entry.error for entry in scan.history] == [f"transient failure {n}" for n in (1, 2, 3)]
    assert scanner.runs[scan.scan_id] == 3
    # Backoff: each retry started no earlier than the previous attempt ended.
    for before, after in zip(scan.history, scan.history[1:], strict=False):
        assert before.finished_at is not None and after.started_at >= before.finished_at


async def test_a_transient_failure_then_success_completes(store: Store) -> None:
    created = await store.create(scan=new_scan(fail="transient", fail_times=1))

    await drain(store, settings())

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.COMPLETE
    assert scan.result == {"scanner": "scripted", "runs": 2}
    assert outcomes(scan) == [Outcome.RETRY, Outcome.COMPLETE]


async def test_a_permanent_failure_is_an_error_at_once(store: Store) -> None:
    created = await store.create(scan=new_scan(fail="permanent"))

    await drain(store, settings())

    scan = await store.get(scan_id=created.scan.scan_id)
    assert (scan.status, scan.error, scan.attempt) == (ScanStatus.ERROR, "permanent failure", 1)


async def test_a_scan_over_its_timeout_is_retried_then_fails(store: Store) -> None:
    created = await store.create(scan=new_scan(sleep=30, max_attempts=2))

    _, scanner = await drain(store, settings(scan_timeout_seconds=0.1))

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.ERROR
    assert scan.error is not None and "timed out" in scan.error
    assert outcomes(scan) == [Outcome.RETRY, Outcome.ERROR]
    assert scanner.runs[scan.scan_id] == 2


async def test_cancelling_a_running_scan_stops_it(store: Store) -> None:
    cfg = settings()
    registry, scanner = scripted_registry(cfg)
    created = await store.create(scan=new_scan(block=True))
    worker = Worker(store, registry, cfg)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(scanner.started.wait(), DEADLINE_S)
        await store.cancel(scan_id=created.scan.scan_id)

        scan = await wait_until_status(store, created.scan.scan_id, ScanStatus.CANCELLED)
    finally:
        worker.stop()
        await asyncio.wait_for(running, DEADLINE_S)
    assert scanner.cancelled == [scan.scan_id]
    assert outcomes(scan) == [Outcome.CANCELLED]
    assert worker.counts == {Outcome.CANCELLED: 1}


@pytest.mark.slow
async def test_graceful_shutdown_finishes_short_scans_and_releases_the_rest(store: Store) -> None:
    # Ten times the short scan's length, so a loaded machine still finishes it inside the grace period.
    cfg = settings(shutdown_seconds=2.0)
    registry, scanner = scripted_registry(cfg)
    short = await store.create(scan=new_scan(sleep=0.2))
    stuck = await store.create(scan=new_scan(block=True))
    worker = Worker(store, registry, cfg)
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(DEADLINE_S):
        while scanner.running < 2:
            await asyncio.sleep(0.01)

    worker.stop()
    await asyncio.wait_for(running, DEADLINE_S)

    done = await store.get(scan_id=short.scan.scan_id)
    assert done.status == ScanStatus.COMPLETE
    released = await store.get(scan_id=stuck.scan.scan_id)
    assert released.status == ScanStatus.ACCEPTED
    assert released.attempt == 0  # a release does not count as an attempt
    assert released.lease_owner is None
    assert outcomes(released) == [Outcome.RELEASED]
    assert scanner.cancelled == [stuck.scan.scan_id]


@pytest.mark.slow
async def test_heartbeats_keep_a_long_scan_alive_past_its_lease(store: Store) -> None:
    # The scan outlives its lease twice over; the lease has room for more than ten late heartbeats, so only
    # a heartbeat loop that stopped (not a loaded machine) lets the reaper take the scan.
    cfg = settings(lease_seconds=1.5, heartbeat_seconds=0.1, reaper_seconds=0.05)
    registry, _ = scripted_registry(cfg)
    created = await store.create(scan=new_scan(sleep=3.0))
    worker = Worker(store, registry, cfg, burst=True)
    requeued = 0

    async def reap() -> None:  # another worker's reaper, running all along
        nonlocal requeued
        while True:
            requeued += await store.requeue_expired()
            await asyncio.sleep(0.05)

    reaping = asyncio.create_task(reap())
    try:
        await asyncio.wait_for(worker.run(), DEADLINE_S)
    finally:
        reaping.cancel()

    assert requeued == 0
    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.COMPLETE
    assert scan.attempt == 1
    assert outcomes(scan) == [Outcome.COMPLETE]
    assert scan.history[0].worker == worker.worker_id


class FlakyStore:
    """Forwards to a real store, but every call fails with StoreUnavailable while ``is_down``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.is_down = False
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name in ("open", "aclose", "__aenter__", "__aexit__"):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.is_down:
                self.failures += 1
                raise StoreUnavailable("store is down (test)")
            return await attribute(*args, **kwargs)

        return call


async def test_a_store_outage_does_not_crash_the_worker(store: Store) -> None:
    cfg = settings(lease_seconds=5.0, heartbeat_seconds=0.05)
    flaky = FlakyStore(store)
    registry, scanner = scripted_registry(cfg)
    first = await store.create_many(scans=[new_scan(sleep=0.3) for _ in range(5)])
    worker = Worker(flaky, registry, cfg, burst=True)
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(DEADLINE_S):
        while scanner.running < 5:
            await asyncio.sleep(0.01)

    # Down while the scans finish: heartbeats, finishes and claims fail for a while.
    flaky.is_down = True
    async with asyncio.timeout(DEADLINE_S):
        while scanner.running or flaky.failures <= 3:
            await asyncio.sleep(0.01)
    assert not running.done()
    later = await store.create_many(scans=[new_scan() for _ in range(5)])
    flaky.is_down = False
    await asyncio.wait_for(running, DEADLINE_S)

    assert flaky.failures > 3
    for c in [*first, *later]:
        scan = await store.get(scan_id=c.scan.scan_id)
        assert scan.status == ScanStatus.COMPLETE
        assert outcomes(scan) == [Outcome.COMPLETE]
