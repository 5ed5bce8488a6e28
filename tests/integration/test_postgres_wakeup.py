"""Wake-up on PostgreSQL: an idle worker starts a new scan at once, long before its fallback poll.

The fallback poll is 60 s and the pickup must come within 10 s, so only a
notification (LISTEN/NOTIFY) can explain it, even on a loaded machine; another
test listens itself and counts the notifications (one per inserting
transaction), fenced by a notification of its own sent after the inserts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from scanq.config import Settings
from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.store.postgres import WORK_CHANNEL, PostgresStore
from scanq.worker import Worker

POLL_S = 60.0
PICKUP_LIMIT_S = 10.0  # generous, yet far below the fallback poll: only a notification explains it
FENCE = "test-fence"
SUBMISSIONS = 3
IDLE_BEFORE_SUBMIT_S = 0.3


async def _notifications_for_one_create(url: str) -> int:
    """LISTEN like a worker would, create one scan from a store, and count the notifications that arrive.

    Notifications are delivered in commit order, so once our own fence notification (sent after the inserts
    committed) arrives, every notification of the inserts has arrived too: no guessed settling time.
    """
    received: list[str] = []
    fenced = asyncio.Event()

    def listen(*args: object) -> None:
        payload = str(args[-1])
        if payload == FENCE:
            fenced.set()
        else:
            received.append(payload)

    conn = await asyncpg.connect(url)
    try:
        await conn.add_listener(WORK_CHANNEL, listen)
        async with PostgresStore(url) as store:
            await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
            await store.create_many(
                scans=[NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)) for _ in range(10)]
            )
        await conn.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, FENCE)
        await asyncio.wait_for(fenced.wait(), PICKUP_LIMIT_S)
        return len(received)
    finally:
        await conn.close()


async def _wait_until_started(store: PostgresStore, scan_id: str, *, deadline_s: float) -> datetime:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        scan = await store.get(scan_id=scan_id)
        if scan.started_at is not None:
            return scan.started_at
        await asyncio.sleep(0.005)
    raise AssertionError(f"scan {scan_id} was not started within {deadline_s} s")


@pytest.mark.slow
async def test_idle_store_wakes_on_insert_from_another_process_store(postgres_database_url: str) -> None:
    async with (
        PostgresStore(postgres_database_url, poll_interval_s=POLL_S) as waiter,
        PostgresStore(postgres_database_url) as submitter,
    ):
        await waiter.wait_for_work(timeout_s=0.01)  # starts listening
        loop = asyncio.get_running_loop()
        for _ in range(SUBMISSIONS):
            waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=POLL_S))
            await asyncio.sleep(IDLE_BEFORE_SUBMIT_S)
            assert not waiting.done(), "woke up without new work"
            started = loop.time()
            await submitter.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
            await asyncio.wait_for(waiting, PICKUP_LIMIT_S)
            assert loop.time() - started < PICKUP_LIMIT_S


async def test_each_inserting_transaction_notifies_once(postgres_database_url: str) -> None:
    assert await _notifications_for_one_create(postgres_database_url) == 2  # a create, then a batch of ten


async def test_delayed_scan_does_not_wake_the_worker(postgres_database_url: str) -> None:
    async with (
        PostgresStore(postgres_database_url, poll_interval_s=POLL_S) as waiter,
        PostgresStore(postgres_database_url) as submitter,
    ):
        await waiter.wait_for_work(timeout_s=0.01)  # starts listening
        waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=POLL_S))
        await asyncio.sleep(0.1)
        later = datetime.now(UTC) + timedelta(hours=1)
        await submitter.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), available_at=later))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "a scan due in an hour woke the worker"
        waiting.cancel()


@pytest.mark.slow
async def test_idle_worker_starts_a_submitted_scan_well_before_the_fallback_poll(postgres_database_url: str) -> None:
    settings = Settings(
        database_url=postgres_database_url,
        poll_seconds=POLL_S,
        concurrency=4,
        lease_seconds=10.0,
        heartbeat_seconds=3.0,
        reaper_seconds=POLL_S,
    )
    async with (
        PostgresStore(postgres_database_url, poll_interval_s=POLL_S) as worker_store,
        PostgresStore(postgres_database_url) as ingest_store,
    ):
        worker = Worker(worker_store, ScannerRegistry(settings), settings, worker_id="idle-worker")
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(IDLE_BEFORE_SUBMIT_S)
            for _ in range(SUBMISSIONS):
                await asyncio.sleep(IDLE_BEFORE_SUBMIT_S)  # idle: waiting on the 60 s fallback poll
                submitted_at = datetime.now(UTC)
                created = await ingest_store.create(
                    scan=NewScan(scan_id=new_scan_id(), created_at=submitted_at, scanner="noop")
                )
                started_at = await _wait_until_started(ingest_store, created.scan.scan_id, deadline_s=PICKUP_LIMIT_S)
                assert (started_at - submitted_at).total_seconds() < PICKUP_LIMIT_S
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
        stats = await ingest_store.stats()
        assert stats.counts[ScanStatus.COMPLETE] == SUBMISSIONS
