"""Worker processes against a shared store: exactly-once under a race, and recovery after SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from scanq.ids import new_scan_id
from scanq.models import NewScan, Outcome, Scan, ScanStatus
from scanq.store import Store, open_store
from tests.acceptance.conftest import EXIT_WITHIN_S, Spawn, free_port

pytestmark = pytest.mark.slow

EXACTLY_ONCE_SCANS = 2000
EXACTLY_ONCE_WORKERS = 4
CRASH_SCANS = 6
DEADLINE_S = 40.0


def worker_env(database_url: str, **settings: Any) -> dict[str, str]:
    return {"SCANQ_DATABASE_URL": database_url, **{f"SCANQ_{k.upper()}": str(v) for k, v in settings.items()}}


def scan(*, scanner: str, **options: Any) -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner=scanner, options=options)


async def all_scans(store: Store) -> list[Scan]:
    scans: list[Scan] = []
    cursor = None
    while True:
        page = await store.list_scans(limit=1000, cursor=cursor)
        scans.extend(page.scans)
        if page.next_cursor is None:
            return scans
        cursor = page.next_cursor


async def wait_for_counts(store: Store, status: ScanStatus, count: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await store.stats()).counts[status] < count:
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_four_workers_complete_every_scan_exactly_once(database_url: str, spawn: Spawn) -> None:
    env = worker_env(database_url, concurrency=64, poll_seconds=0.5, lease_seconds=10, heartbeat_seconds=2)
    async with open_store(database_url) as store:
        workers = [spawn("worker", env=env) for _ in range(EXACTLY_ONCE_WORKERS)]
        for worker in workers:
            worker.wait_for_output("started")
        for _ in range(EXACTLY_ONCE_SCANS // 500):
            await store.create_many(scans=[scan(scanner="noop") for _ in range(500)])

        await wait_for_counts(store, ScanStatus.COMPLETE, EXACTLY_ONCE_SCANS)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(EXIT_WITHIN_S) == 0, worker.output()

        scans = await all_scans(store)
        stats = await store.stats()

    assert len(scans) == EXACTLY_ONCE_SCANS
    assert stats.counts[ScanStatus.COMPLETE] == EXACTLY_ONCE_SCANS
    for s in scans:
        assert s.status == ScanStatus.COMPLETE
        completions = [entry for entry in s.history if entry.outcome == Outcome.COMPLETE]
        assert len(completions) == 1, s
        assert s.attempt == 1, s
    by_worker = Counter(s.history[-1].worker for s in scans)
    assert len(by_worker) >= 2, by_worker  # the workers really raced for the same scans


@pytest.mark.parametrize("database_url", ["sqlite", "postgres", "mongo"], indirect=True)
async def test_scans_of_a_killed_worker_run_again_elsewhere(database_url: str, spawn: Spawn) -> None:
    # The survivor's lease has room for ten late heartbeats, and each scan runs long enough to be caught running.
    env = worker_env(
        database_url, lease_seconds=2.0, heartbeat_seconds=0.2, reaper_seconds=0.2, poll_seconds=0.5, concurrency=10
    )
    async with open_store(database_url) as store:
        created = await store.create_many(
            scans=[scan(scanner="mock", min_sleep=2.0, max_sleep=2.5, failure_rate=0) for _ in range(CRASH_SCANS)]
        )
        victim = spawn("worker", env=env)
        await wait_for_counts(store, ScanStatus.RUNNING, CRASH_SCANS)
        victim.signal(signal.SIGKILL)
        victim.wait(EXIT_WITHIN_S)
        survivor = spawn("worker", env=env)

        await wait_for_counts(store, ScanStatus.COMPLETE, CRASH_SCANS)
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(EXIT_WITHIN_S) == 0, survivor.output()
        scans = [await store.get(scan_id=c.scan.scan_id) for c in created]

    for s in scans:
        assert s.status == ScanStatus.COMPLETE
        assert s.attempt == 2
        assert [entry.outcome for entry in s.history] == [Outcome.LEASE_EXPIRED, Outcome.COMPLETE]
        assert s.history[0].worker.split(":")[1] == str(victim.pid)
        assert s.history[1].worker.split(":")[1] == str(survivor.pid)


def test_a_worker_waits_for_an_unreachable_store_and_still_stops_on_sigterm(spawn: Spawn) -> None:
    port = free_port()  # nothing listens there
    worker = spawn("worker", env=worker_env(f"postgresql://nobody@127.0.0.1:{port}/scanq"))
    worker.wait_for_output("store open failed")
    assert worker.popen.poll() is None  # still trying, not crashed

    worker.signal(signal.SIGTERM)
    assert worker.wait(EXIT_WITHIN_S) == 0, worker.output()
