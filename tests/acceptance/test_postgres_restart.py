"""PostgreSQL goes away and comes back: nothing acknowledged is lost and nobody needs a restart.

Each test owns its cluster (``pg_cluster``) and stops it with ``pg_ctl stop -m
fast`` (clients are disconnected) in the middle of the traffic: real ``scanq
ingest`` and ``scanq worker`` processes keep running throughout. An outage
longer than the lease must not turn the live worker's scans into expired ones:
its finished results are written, not thrown away and run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from subprocess import DEVNULL, STDOUT

import asyncpg
import httpx
import pytest

from scanq.exceptions import StoreUnavailable
from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.store.postgres import PostgresStore
from tests.servers.postgres import PostgresCluster, free_port

SUBMITTERS = 4
BEFORE_OUTAGE = 60
AFTER_OUTAGE = 60
# Longer than the lease: scans held during the outage lose their leases and are requeued.
OUTAGE_S = 1.5
DRAIN_DEADLINE_S = 30.0
SERVICE_START_S = 20.0
HTTP_TIMEOUT_S = 10.0
WAKE_LIMIT_S = 0.5
SERVICE_ENV = {
    "SCANQ_CONCURRENCY": "16",
    "SCANQ_LEASE_SECONDS": "1",
    "SCANQ_HEARTBEAT_SECONDS": "0.3",
    "SCANQ_REAPER_SECONDS": "0.5",
    "SCANQ_POLL_SECONDS": "2",
    "SCANQ_MOCK_MIN_SLEEP": "0.01",
    "SCANQ_MOCK_MAX_SLEEP": "0.2",
    "SCANQ_MOCK_FAILURE_RATE": "0",
    "SCANQ_SHUTDOWN_SECONDS": "1",
}
TERMINAL = [str(status) for status in ScanStatus if status.is_terminal]
# Twice the lease: every lease held when the database goes has expired by the time it is back. The
# reaper runs far more often than the heartbeat, so before the fix it requeued the live worker's leases
# (finished results and all) before the worker could renew them.
LONG_OUTAGE_S = 10.0
LONG_OUTAGE_ENV = {
    "SCANQ_LEASE_SECONDS": "5",
    "SCANQ_HEARTBEAT_SECONDS": "2",
    "SCANQ_REAPER_SECONDS": "0.5",
    "SCANQ_MOCK_MIN_SLEEP": "0.2",
    "SCANQ_MOCK_MAX_SLEEP": "2",
}
LONG_OUTAGE_BEFORE = 64
LONG_OUTAGE_AFTER = 16
LONG_OUTAGE_RUNNING = 16  # the worker's concurrency: every slot busy when the database goes
LONG_OUTAGE_DRAIN_S = 90.0
# The services the running test started. ``Services.stop`` stops them in the test's event loop; should a
# timeout have cut that loop short, ``kill_leftover_services`` (sync, so it always runs) kills them.
_started: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def kill_leftover_services() -> Iterator[None]:
    yield
    while _started:
        process = _started.pop()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is the process and its children


def _new_scan() -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="mock")


class HttpSubmitter:
    """Concurrent clients of a real ingest process (``GET /``): the ids it returned, and its 503s."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT_S)
        self.accepted: list[str] = []
        self.unavailable = 0
        self.other_answers: list[int] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(SUBMITTERS)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        await self.client.aclose()

    async def wait_for(self, count: int, *, timeout_s: float = 20.0) -> None:
        target = len(self.accepted) + count
        async with asyncio.timeout(timeout_s):
            while len(self.accepted) < target:
                await asyncio.sleep(0.01)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            answer = await self.client.get("/")
            if answer.status_code == 200:
                self.accepted.append(answer.text.strip())
                await asyncio.sleep(0.005)
            elif answer.status_code == 503:
                self.unavailable += 1  # the client would retry later
                await asyncio.sleep(0.02)
            else:
                self.other_answers.append(answer.status_code)


class Services:
    """Real ``scanq ingest`` and ``scanq worker`` processes; each logs to a file, all stopped at teardown."""

    def __init__(self, database_url: str, directory: Path, *, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.directory = directory
        self.env = {**SERVICE_ENV, **(env or {})}
        self.ingest_port = free_port()
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    async def start(self, name: str, *, ready: str) -> None:
        env = {
            **os.environ,
            **self.env,
            "SCANQ_DATABASE_URL": self.database_url,
            "SCANQ_INGEST_PORT": str(self.ingest_port),
            "PYTHONUNBUFFERED": "1",
        }
        with (self.directory / f"{name}.log").open("wb") as log:
            self.processes[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "scanq", name),
                env=env,
                stdin=DEVNULL,
                stdout=log,
                stderr=STDOUT,
                start_new_session=True,
            )
        _started.append(self.processes[name])
        async with asyncio.timeout(SERVICE_START_S):
            while ready not in self.log(name):
                assert self.processes[name].returncode is None, self.log(name)
                await asyncio.sleep(0.05)

    def are_running(self) -> bool:
        return all(process.returncode is None for process in self.processes.values())

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def started_services(cluster: PostgresCluster, directory: Path, **env: str) -> AsyncIterator[Services]:
    """``scanq ingest`` and ``scanq worker`` on ``cluster``, both up and ready; ``env`` overrides settings."""
    async with PostgresStore(cluster.url):  # migrate before the services race to do it
        pass
    running = Services(cluster.url, directory, env=env)
    try:
        await running.start("ingest", ready="listening on")
        await running.start("worker", ready="started")
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def services(pg_cluster: PostgresCluster, tmp_path: Path) -> AsyncIterator[Services]:
    """``scanq ingest`` and ``scanq worker`` on the test's own cluster, both up and ready."""
    async with started_services(pg_cluster, tmp_path) as running:
        yield running


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


# Each scan's attempt outcomes: the history entries, then the ended attempt its row implies (migration 9:
# attempt_worker set on a finished scan, its status the outcome; none while Running).
OUTCOMES = """
SELECT s.scan_id, h.outcome FROM scans AS s, LATERAL (
    SELECT e ->> 'outcome' AS outcome FROM jsonb_array_elements(s.history) AS e
    UNION ALL
    SELECT s.status WHERE s.attempt_worker IS NOT NULL AND s.status <> 'Running'
) AS h
"""


async def _completed_more_than_once(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT scan_id FROM ({OUTCOMES}) AS o WHERE outcome = 'Complete' "
            "GROUP BY scan_id HAVING count(*) > 1) AS twice"
        )
        return count
    finally:
        await conn.close()


async def _outcome_counts(url: str, scan_ids: list[str]) -> dict[str, int]:
    """How many attempts of these scans ended with each outcome."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f"SELECT outcome, count(*) AS n FROM ({OUTCOMES}) AS o WHERE scan_id = ANY($1::uuid[]) GROUP BY 1",
            scan_ids,
        )
        return {str(row["outcome"]): int(row["n"]) for row in rows}
    finally:
        await conn.close()


async def _stop(cluster: PostgresCluster) -> None:
    await asyncio.to_thread(cluster.stop, mode="fast")


async def _start(cluster: PostgresCluster) -> None:
    await asyncio.to_thread(cluster.start)


@pytest.mark.slow
async def test_every_acknowledged_scan_survives_a_restart_and_finishes(
    pg_cluster: PostgresCluster, services: Services
) -> None:
    submitter = HttpSubmitter(services.ingest_url)
    submitter.start()
    async with PostgresStore(pg_cluster.url) as store:
        await submitter.wait_for(BEFORE_OUTAGE)
        async with asyncio.timeout(DRAIN_DEADLINE_S):  # the worker is busy when the database goes
            while (await store.stats()).counts[ScanStatus.COMPLETE] == 0:
                await asyncio.sleep(0.05)

        await _stop(pg_cluster)
        unavailable_before = submitter.unavailable
        accepted_during = len(submitter.accepted)
        await asyncio.sleep(OUTAGE_S)
        assert (await submitter.client.get("/readyz")).status_code == 503
        assert submitter.unavailable > unavailable_before, "ingest did not answer 503 while the database was down"
        assert len(submitter.accepted) == accepted_during, "ingest returned an id while the database was down"

        await _start(pg_cluster)
        await submitter.wait_for(AFTER_OUTAGE)  # the same ingest process recovers by itself
        assert (await submitter.client.get("/readyz")).status_code == 200
        await submitter.stop()
        assert submitter.other_answers == []

        async with asyncio.timeout(DRAIN_DEADLINE_S):
            while await _unfinished(pg_cluster.url, submitter.accepted):
                await asyncio.sleep(0.2)
        assert services.are_running(), "a service died instead of riding out the outage"
        for scan_id in submitter.accepted:
            assert (await store.get(scan_id=scan_id)).status.is_terminal
        stats = await store.stats()
        assert stats.counts[ScanStatus.ACCEPTED] == stats.counts[ScanStatus.RUNNING] == 0
        assert await _completed_more_than_once(pg_cluster.url) == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_an_outage_longer_than_the_lease_loses_no_finished_result(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    async with (
        started_services(pg_cluster, tmp_path, **LONG_OUTAGE_ENV) as services,
        PostgresStore(pg_cluster.url) as store,
    ):
        submitter = HttpSubmitter(services.ingest_url)
        submitter.start()
        await submitter.wait_for(LONG_OUTAGE_BEFORE)
        await submitter.stop()
        async with asyncio.timeout(DRAIN_DEADLINE_S):  # every slot of the worker busy when the database goes
            while (await store.stats()).counts[ScanStatus.RUNNING] < LONG_OUTAGE_RUNNING:
                await asyncio.sleep(0.05)

        await _stop(pg_cluster)
        await asyncio.sleep(LONG_OUTAGE_S)  # the running scans finish meanwhile; their leases expire
        await _start(pg_cluster)

        after = HttpSubmitter(services.ingest_url)
        after.start()
        await after.wait_for(LONG_OUTAGE_AFTER)  # the same processes carry on
        await after.stop()
        accepted = submitter.accepted + after.accepted
        async with asyncio.timeout(LONG_OUTAGE_DRAIN_S):
            while await _unfinished(pg_cluster.url, accepted):
                await asyncio.sleep(0.2)

        assert services.are_running(), "a service died instead of riding out the outage"
        outcomes = await _outcome_counts(pg_cluster.url, accepted)
        # The worker was alive throughout: none of its leases may have been taken as expired.
        assert outcomes.get("LeaseExpired", 0) == 0, (outcomes, services.log("worker")[-4000:])
        assert outcomes == {"Complete": len(accepted)}
        for scan_id in accepted:
            assert (await store.get(scan_id=scan_id)).status == ScanStatus.COMPLETE
        assert await _completed_more_than_once(pg_cluster.url) == 0


@pytest.mark.slow  # a cluster of its own, stopped and started: seconds
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
