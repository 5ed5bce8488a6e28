"""The original system's data: ``{_id: <uuid string>, status}`` documents are adopted, processed and listed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from scanq.config import PluginSettings, Settings
from scanq.models import Outcome, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.scanners.mock import MockSettings
from scanq.store import open_store
from scanq.store.mongo import LEGACY_OWNER, split_url
from scanq.worker import Worker

Document = dict[str, Any]
DEADLINE_S = 20.0
FAST_MOCK: dict[str, Any] = {
    "plugins": PluginSettings(MockSettings(min_sleep=0.0, max_sleep=0.02, failure_rate=0.0)),
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.2,
    "reaper_seconds": 0.1,
    "poll_seconds": 0.2,
    "shutdown_seconds": 0.3,
}


@pytest.fixture
async def original(mongo_database_url: str) -> AsyncIterator[AsyncCollection[Document]]:
    """The collection as the original system used it: plain PyMongo, no scanq code."""
    client_url, collection = split_url(mongo_database_url)
    client: AsyncMongoClient[Document] = AsyncMongoClient(client_url, tz_aware=True)
    yield client.get_default_database()[collection or "scans"]
    await client.close()


def submitted_by_original_ingest(count: int) -> list[Document]:
    """What the original ingest service wrote for each request."""
    return [{"_id": str(uuid.uuid4()), "status": "Accepted"} for _ in range(count)]


async def test_original_documents_are_listed_processed_and_still_readable(
    mongo_database_url: str, original: AsyncCollection[Document]
) -> None:
    queued = submitted_by_original_ingest(5)
    await original.insert_many([*queued, {"_id": str(uuid.uuid4()), "status": "Complete"}])
    ids = {doc["_id"] for doc in queued}
    settings = Settings(**FAST_MOCK)

    async with open_store(mongo_database_url) as store:
        page = await store.list_scans(limit=100)
        before = await store.stats()
        worker = Worker(store, ScannerRegistry(settings), settings, burst=True)
        await asyncio.wait_for(worker.run(), DEADLINE_S)
        scans = [await store.get(scan_id=scan_id) for scan_id in ids]
        after = await store.stats()

    assert len(page.scans) == 6
    listed = {scan.scan_id: scan for scan in page.scans}
    assert all(listed[scan_id].status == ScanStatus.ACCEPTED for scan_id in ids)
    assert all((listed[scan_id].scanner, listed[scan_id].attempt) == ("mock", 0) for scan_id in ids)
    assert before.counts[ScanStatus.ACCEPTED] == 5 and before.counts[ScanStatus.COMPLETE] == 1
    assert before.oldest_accepted_at is not None
    for scan in scans:
        assert scan.status == ScanStatus.COMPLETE
        assert [entry.outcome for entry in scan.history] == [Outcome.COMPLETE]
        assert scan.result is not None
    assert after.counts[ScanStatus.COMPLETE] == 6 and after.counts[ScanStatus.ACCEPTED] == 0
    # The original status service read only ``status``: it still can.
    async for doc in original.find({"_id": {"$in": list(ids)}}, projection={"status": True}):
        assert doc["status"] == "Complete"


async def test_documents_inserted_while_scanq_runs_are_picked_up(
    mongo_database_url: str, original: AsyncCollection[Document]
) -> None:
    settings = Settings(**FAST_MOCK)
    async with open_store(mongo_database_url) as store:
        worker = Worker(store, ScannerRegistry(settings), settings)
        running = asyncio.create_task(worker.run())
        try:
            [doc] = submitted_by_original_ingest(1)
            await original.insert_one(doc)
            async with asyncio.timeout(DEADLINE_S):
                while (scan := await store.get(scan_id=doc["_id"])).status != ScanStatus.COMPLETE:
                    await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(running, DEADLINE_S)
    assert scan.attempt == 1


async def test_a_scan_the_original_processor_left_running_is_requeued(
    mongo_database_url: str, original: AsyncCollection[Document]
) -> None:
    """The original defect: a crashed processor left its scan Running forever."""
    stuck = str(uuid.uuid4())
    await original.insert_one({"_id": stuck, "status": "Running"})

    async with open_store(mongo_database_url) as store:
        adopted = await store.get(scan_id=stuck)
        assert await store.requeue_expired() == 0  # the legacy lease gives the original processor time to finish
        past = datetime.now(UTC) - timedelta(seconds=1)
        await original.update_one({"_id": stuck}, {"$set": {"lease_expires_at": past}})
        assert await store.requeue_expired() == 1
        requeued = await store.get(scan_id=stuck)

    assert adopted.status == ScanStatus.RUNNING
    assert (adopted.lease_owner, adopted.attempt) == (LEGACY_OWNER, 1)
    assert adopted.lease_expires_at is not None and adopted.lease_expires_at > datetime.now(UTC)
    assert requeued.status == ScanStatus.ACCEPTED
    assert requeued.lease_owner is None
