"""PostgreSQL goes away and comes back: nothing acknowledged is lost and nobody needs a restart.

Each test owns its cluster (``pg_cluster``) and stops it with ``pg_ctl stop -m
fast`` (clients are disconnected) in the middle of the traffic.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from scanq.exceptions import StoreUnavailable
from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.store.postgres import PostgresStore
from tests.servers.postgres import PostgresCluster

SUBMITTERS = 4
BEFORE_OUTAGE = 60
AFTER_OUTAGE = 60
OUTAGE_S = 1.0
DRAIN_DEADLINE_S = 30.0
WORKER_START_S = 20.0
WAKE_LIMIT_S = 0.5
WORKER_ENV = {
    "SCANQ_CONCURRENCY": "16",
    "SCANQ_LEASE_SECONDS": "2",
    "SCANQ_HEARTBEAT_SECONDS": "0.5",
    "SCANQ_REAPER_SECONDS": "0.5",
    "SCANQ_POLL_SECONDS": "2",
    "SCANQ_MOCK_MIN_SLEEP": "0.01",
    "SCANQ_MOCK_MAX_SLEEP": "0.2",
    "SCANQ_MOCK_FAILURE_RATE": "0",
    "SCANQ_SHUTDOWN_SECONDS": "1",
}
TERMINAL = [str(status) for status in ScanStatus if status.is_terminal]


def _new_scan() -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="mock")


class Submitter:
    """Several concurrent submit loops, like clients hammering ingest: ids returned, and refusals."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.accepted: list[str] = []
        self.refused = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(SUBMITTERS)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def wait_for(self, count: int, *, timeout_s: float = 20.0) -> None:
        target = len(self.accepted) + count
        async with asyncio.timeout(timeout_s):
            while len(self.accepted) < target:
                await asyncio.sleep(0.01)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                created = await self.store.create(scan=_new_scan())
            except StoreUnavailable:
                self.refused += 1  # ingest answers 503 here; the client retries
                await asyncio.sleep(0.02)
                continue
            self.accepted.append(created.scan.scan_id)
            await asyncio.sleep(0.005)


@pytest.fixture
async def worker_process(pg_cluster: PostgresCluster, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real ``scanq worker`` process on the cluster (started and running), stopped at teardown."""
    log_path = tmp_path / "worker.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "scanq", "worker"),
        env={**os.environ, **WORKER_ENV, "SCANQ_DATABASE_URL": pg_cluster.url, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(WORKER_START_S):
            while "started" not in log_path.read_text(errors="replace"):
                assert process.returncode is None, log_path.read_text(errors="replace")
                await asyncio.sleep(0.05)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _unfinished(url: str, scan_ids: list[str]) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::uuid[]) AS i(scan_id) "
            "LEFT JOIN scans USING (scan_id) WHERE scans.status IS NULL OR scans.status <> ALL($2::text[])",
            scan_ids,
            TERMINAL,
        )
        return count
    finally:
        await conn.close()


async def _stop(cluster: PostgresCluster) -> None:
    await asyncio.to_thread(cluster.stop, mode="fast")


async def _start(cluster: PostgresCluster) -> None:
    await asyncio.to_thread(cluster.start)


@pytest.mark.slow
async def test_every_acknowledged_scan_survives_a_restart_and_finishes(
    pg_cluster: PostgresCluster, worker_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    async with PostgresStore(pg_cluster.url) as ingest:
        submitter = Submitter(ingest)
        submitter.start()
        await submitter.wait_for(BEFORE_OUTAGE)
        async with asyncio.timeout(DRAIN_DEADLINE_S):  # the worker is busy when the database goes
            while (await ingest.stats()).counts[ScanStatus.COMPLETE] == 0:
                await asyncio.sleep(0.05)

        await _stop(pg_cluster)
        with pytest.raises(StoreUnavailable):
            await ingest.ping()
        refused_before = submitter.refused
        accepted_during = len(submitter.accepted)
        await asyncio.sleep(OUTAGE_S)
        assert submitter.refused > refused_before, "submissions were not refused while the database was down"
        assert len(submitter.accepted) == accepted_during, "an id was returned while the database was down"

        await _start(pg_cluster)
        await submitter.wait_for(AFTER_OUTAGE)  # the same store recovers by itself
        await ingest.ping()
        await submitter.stop()

        async with asyncio.timeout(DRAIN_DEADLINE_S):
            while await _unfinished(pg_cluster.url, submitter.accepted):
                await asyncio.sleep(0.2)
        assert worker_process.returncode is None, "the worker died instead of riding out the outage"
        for scan_id in submitter.accepted:
            assert (await ingest.get(scan_id=scan_id)).status.is_terminal
        stats = await ingest.stats()
        assert stats.counts[ScanStatus.COMPLETE] >= len(submitter.accepted)
        assert stats.counts[ScanStatus.ACCEPTED] == stats.counts[ScanStatus.RUNNING] == 0


async def test_store_reports_outage_then_recovers_with_wakeups(pg_cluster: PostgresCluster) -> None:
    async with PostgresStore(pg_cluster.url, poll_interval_s=5.0) as waiter, PostgresStore(pg_cluster.url) as other:
        await waiter.wait_for_work(timeout_s=1.0)  # starts listening
        await _stop(pg_cluster)
        for call in (waiter.ping(), other.create(scan=_new_scan()), other.claim(worker_id="w", limit=1, lease_s=1)):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(call, 5.0)
        await waiter.wait_for_work(timeout_s=0.2)  # never raises, even with the database gone

        await _start(pg_cluster)
        await waiter.ping()
        created = await other.create(scan=_new_scan())
        assert (await waiter.get(scan_id=created.scan.scan_id)).status == ScanStatus.ACCEPTED

        # The LISTEN connection comes back on its own: wake-ups are prompt again (not the 5 s poll).
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(15.0):
            while True:
                await waiter.wait_for_work(timeout_s=0.05)  # drain a pending wake-up
                waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=5.0))
                await asyncio.sleep(0.05)
                started = loop.time()
                await other.create(scan=_new_scan())
                await waiting
                if loop.time() - started < WAKE_LIMIT_S / 5:
                    break
