"""Idle workers learn of new work from a change stream, or by polling on a standalone server."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest

from scanq.config import Settings
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store import open_store
from scanq.store.mongo import MongoStore
from scanq.worker import Worker
from tests.scripted import new_scan, scripted_registry
from tests.servers.availability import backend_unavailable
from tests.servers.mongo import free_port, run_secantus

LONG_POLL_S = 30.0
# Woken means: well before the long poll's own timeout (a generous deadline, not a latency goal:
# the latency is measured by the pickup benchmark).
WOKEN_WITHIN_S = LONG_POLL_S / 2
DEADLINE_S = 20.0


async def open_mongo(url: str, **options: float) -> MongoStore:
    if options:
        url += ("&" if "?" in url else "?") + urlencode(options)
    store = open_store(url)
    assert isinstance(store, MongoStore)
    await store.open()
    return store


async def test_change_stream_wakes_a_waiting_store(mongo_database_url: str) -> None:
    waiter = await open_mongo(mongo_database_url, poll_interval_s=LONG_POLL_S)
    submitter = await open_mongo(mongo_database_url)
    try:
        if not waiter.has_change_streams:
            backend_unavailable("the MongoDB test server is standalone: change streams need a replica set")
        await waiter.wait_for_work(timeout_s=DEADLINE_S)  # returns once the stream is open
        waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=LONG_POLL_S))
        await asyncio.sleep(0.3)
        assert not waiting.done()

        loop = asyncio.get_running_loop()
        submitted_at = loop.time()
        await submitter.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
        await asyncio.wait_for(waiting, WOKEN_WITHIN_S)
        assert loop.time() - submitted_at < WOKEN_WITHIN_S

        # A retry made claimable again by another store wakes it too.
        [claimed] = await submitter.claim(worker_id="w", limit=1, lease_s=5)
        waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=LONG_POLL_S))
        await asyncio.sleep(0.3)
        lease = Lease(scan_id=claimed.scan_id, worker_id="w", attempt=claimed.attempt)
        await submitter.finish(finishes=[Finish(lease=lease, outcome=Outcome.RETRY, error="again")])
        await asyncio.wait_for(waiting, WOKEN_WITHIN_S)
    finally:
        await waiter.aclose()
        await submitter.aclose()


@pytest.mark.slow
async def test_worker_starts_a_submitted_scan_long_before_the_poll_interval(mongo_database_url: str) -> None:
    settings = Settings(poll_seconds=LONG_POLL_S, reaper_seconds=LONG_POLL_S, shutdown_seconds=0.3)
    registry, scanner = scripted_registry(settings)
    async with open_store(mongo_database_url) as worker_store, open_store(mongo_database_url) as ingest_store:
        worker = Worker(worker_store, registry, settings)
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(1.0)  # idle: the claim found nothing, the worker waits for work
            created = await ingest_store.create(scan=new_scan())
            async with asyncio.timeout(DEADLINE_S):
                while (scan := await ingest_store.get(scan_id=created.scan.scan_id)).status != ScanStatus.COMPLETE:
                    await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(running, DEADLINE_S)

    assert scan.started_at is not None
    assert (scan.started_at - created.scan.created_at).total_seconds() < WOKEN_WITHIN_S
    assert scanner.runs[created.scan.scan_id] == 1


@pytest.mark.slow
async def test_standalone_server_falls_back_to_polling(standalone_mongo_url: str) -> None:
    poll_s = 0.2
    waiter = await open_mongo(standalone_mongo_url, poll_interval_s=poll_s)
    submitter = await open_mongo(standalone_mongo_url)
    try:
        assert not waiter.has_change_streams
        loop = asyncio.get_running_loop()
        started = loop.time()
        await waiter.wait_for_work(timeout_s=0.5)  # nothing to find: returns at the timeout
        assert 0.45 <= loop.time() - started < WOKEN_WITHIN_S

        waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=LONG_POLL_S))
        await asyncio.sleep(0.3)
        submitted_at = loop.time()
        await submitter.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
        await asyncio.wait_for(waiting, WOKEN_WITHIN_S)
        assert loop.time() - submitted_at < WOKEN_WITHIN_S  # by a poll, not at the long timeout
    finally:
        await waiter.aclose()
        await submitter.aclose()


@pytest.mark.slow
async def test_change_stream_comes_back_after_the_server_restarts(tmp_path: Path) -> None:
    if importlib.util.find_spec("secantus") is None:
        backend_unavailable("SecantusDB is not installed (pip install secantusdb)")
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}/scanq?collection=scans"
    with run_secantus(tmp_path, port=port):
        waiter = await open_mongo(url, poll_interval_s=LONG_POLL_S)
        await waiter.wait_for_work(timeout_s=DEADLINE_S)  # the stream is open
    try:
        await asyncio.sleep(0.5)  # the stream fails while the server is down
        with run_secantus(tmp_path, port=port):
            # Wake-ups caused by the failure and the reconnection: wait until the stream is quiet again.
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    started = asyncio.get_running_loop().time()
                    await waiter.wait_for_work(timeout_s=1.0)
                    if asyncio.get_running_loop().time() - started >= 0.9:
                        break
            waiting = asyncio.create_task(waiter.wait_for_work(timeout_s=LONG_POLL_S))
            await asyncio.sleep(0.2)
            submitter = await open_mongo(url)
            try:
                await submitter.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
            finally:
                await submitter.aclose()
            await asyncio.wait_for(waiting, WOKEN_WITHIN_S)
            await waiter.aclose()
    finally:
        await waiter.aclose()
