"""What only the MongoDB store does for events (rule 10): the outbox in the scan's own update, and its numbering.

These run on a standalone server (no multi-document transactions), where the outbox matters most,
and check what the contract cannot see: what is stored, that a refused fence records nothing, that
concurrent numbering in many processes makes one gapless log with every event once, that no number
is given twice after pruning, and that retention never deletes a scan with its events unnumbered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from scanq.models import Finish, Lease, Outcome, ScanStatus
from scanq.store import open_store
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.mongo import MongoStore, split_url
from tests.contract.helpers import LONG_LEASE_S, lease_of, new_scan

Document = dict[str, Any]
DEADLINE_S = 10.0
FLUSHERS = 6
ROUNDS = 5
PER_ROUND = 8


@pytest.fixture(params=["standalone", "replica_set"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "standalone_mongo_url" if request.param == "standalone" else "mongo_database_url"
    value: str = request.getfixturevalue(fixture)
    return value


@pytest.fixture
async def raw(url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    """The store's database through PyMongo directly, to check what is really stored."""
    client_url, _ = split_url(url)
    client: AsyncMongoClient[Document] = AsyncMongoClient(client_url, tz_aware=True)
    yield client.get_default_database()
    await client.close()


async def open_mongo(url: str) -> MongoStore:
    store = open_store(url)
    assert isinstance(store, MongoStore)
    await store.open()
    return store


async def test_a_transition_writes_its_event_into_the_scans_own_document(
    url: str, raw: AsyncDatabase[Document]
) -> None:
    async with open_store(url) as store:
        created = (await store.create(scan=new_scan())).scan
        stored = await raw.scans.find_one({"_id": created.scan_id})
        assert stored is not None
        assert [(e["s"], e["a"]) for e in stored["outbox"]] == [("Accepted", 0)]
        assert stored["outbox_since"] == stored["updated_at"]
        assert await raw.scans_events.count_documents({}) == 0  # numbered only when read

        running = (await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S))[0]
        stored = await raw.scans.find_one({"_id": created.scan_id})
        assert stored is not None
        assert [(e["s"], e["a"]) for e in stored["outbox"]] == [("Accepted", 0), ("Running", 1)]

        events = await store.read_events()

        assert [(e.status, e.attempt, e.event_id) for e in events] == [
            (ScanStatus.ACCEPTED, 0, "1"),
            (ScanStatus.RUNNING, 1, "2"),
        ]
        assert events[1].at == running.updated_at
        async with asyncio.timeout(DEADLINE_S):  # pulled from the outbox behind the reader's back
            while await raw.scans.count_documents({"_id": created.scan_id, "outbox_since": {"$exists": True}}):
                await asyncio.sleep(0.05)
        stored = await raw.scans.find_one({"_id": created.scan_id})
        assert stored is not None
        assert "outbox" not in stored and "outbox_since" not in stored
        logged = await raw.scans_events.find().sort("_id", 1).to_list()
        assert [(doc["_id"], doc["scan_id"], doc["status"]) for doc in logged] == [
            (1, created.scan_id, "Accepted"),
            (2, created.scan_id, "Running"),
        ]


async def test_a_refused_fence_records_nothing(url: str, raw: AsyncDatabase[Document]) -> None:
    async with open_store(url) as store:
        await store.create(scan=new_scan())
        running = (await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S))[0]
        await store.read_events()
        stale = Lease(scan_id=running.scan_id, worker_id="w2", attempt=running.attempt)

        assert await store.finish(finishes=[Finish(lease=stale, outcome=Outcome.COMPLETE, result={})]) == [False]
        assert await store.release(leases=[stale]) == 0

        stored = await raw.scans.find_one({"_id": running.scan_id})
        assert stored is not None
        assert [e["s"] for e in stored.get("outbox", [])] in ([], ["Accepted", "Running"])  # maybe not pulled yet
        assert len(await store.read_events()) == 2


async def test_concurrent_flushers_make_one_gapless_log_with_every_event_once(url: str) -> None:
    """Stores racing to number (each a process of its own) while scans are written: numbers 1..N, each event once."""
    writer = await open_mongo(url)
    flushers = [await open_mongo(url) for _ in range(FLUSHERS)]
    try:
        made: list[str] = []
        for _ in range(ROUNDS):
            news = [new_scan() for _ in range(PER_ROUND)]
            writing = asyncio.gather(*(writer.create(scan=new) for new in news))
            reading = asyncio.gather(*(flusher.read_events() for flusher in flushers))
            await asyncio.gather(writing, reading)
            made.extend(new.scan_id for new in news)
            await writer.claim(worker_id="w", limit=PER_ROUND // 2, lease_s=LONG_LEASE_S)

        events = await flushers[0].read_events(limit=1000)

        assert [event.event_id for event in events] == [str(n) for n in range(1, len(events) + 1)]
        accepted = [event.scan_id for event in events if event.status is ScanStatus.ACCEPTED]
        assert sorted(accepted) == sorted(made)  # each once
        running = [event for event in events if event.status is ScanStatus.RUNNING]
        assert len(running) == len({event.scan_id for event in running}) == ROUNDS * (PER_ROUND // 2)
        for event in running:  # a scan's own events keep their order
            first = next(e for e in events if e.scan_id == event.scan_id)
            assert first.status is ScanStatus.ACCEPTED
    finally:
        for store in (writer, *flushers):
            await store.aclose()


async def test_numbers_are_never_given_twice_after_pruning_everything(url: str) -> None:
    async with open_store(url) as store:
        await store.create_many(scans=[new_scan() for _ in range(3)])
        assert len(await store.read_events()) == 3
        assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=30)
        assert await store.dispatch_events(owner="d") == 3
        assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=30)
        assert await store.prune_events(before=datetime.now(UTC) + timedelta(days=1), owner="p") == 3
        assert await store.read_events() == []
        assert await store.events_head() == "3"

        await store.create(scan=new_scan())

        assert [event.event_id for event in await store.read_events(after="3")] == ["4"]


async def test_pruning_a_scan_numbers_its_events_first(url: str, raw: AsyncDatabase[Document]) -> None:
    async with open_store(url) as store:
        await store.create(scan=new_scan())
        running = (await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S))[0]
        done = Finish(lease=lease_of(running), outcome=Outcome.COMPLETE, result={})
        assert await store.finish(finishes=[done]) == [True]
        assert await raw.scans_events.count_documents({}) == 0
        assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=30)

        pruned = await store.prune(
            status=ScanStatus.COMPLETE, finished_before=datetime.now(UTC) + timedelta(days=1), limit=10, owner="p"
        )

        assert [scan.scan_id for scan in pruned] == [running.scan_id]
        events = await store.read_events()
        assert [event.status for event in events] == [ScanStatus.ACCEPTED, ScanStatus.RUNNING, ScanStatus.COMPLETE]


async def test_open_creates_the_event_and_webhook_indexes(url: str, raw: AsyncDatabase[Document]) -> None:
    async with open_store(url):
        scans = await raw.scans.index_information()
        events = await raw.scans_events.index_information()
        deliveries = await raw.scans_webhook_deliveries.index_information()
        endpoints = await raw.scans_webhook_endpoints.index_information()

    assert scans["event_outbox"]["key"] == [("outbox_since", 1), ("_id", 1)]
    assert events["event_key"]["unique"] is True
    assert events["scan_events"]["key"] == [("scan_id", 1), ("_id", 1)]
    assert events["tenant_events"]["key"] == [("tenant", 1), ("_id", 1)]
    assert deliveries["endpoint_event"]["key"] == [("endpoint_id", 1), ("seq", 1)]
    assert deliveries["endpoint_event"]["unique"] is True
    assert deliveries["due_pending"]["partialFilterExpression"] == {"status": "pending"}
    assert endpoints["tenant_created"]["key"] == [("tenant", 1), ("created_at", 1), ("_id", 1)]


@pytest.mark.slow
async def test_wait_for_events_polls_on_a_standalone_server(standalone_mongo_url: str) -> None:
    waiter = await open_mongo(standalone_mongo_url)
    writer = await open_mongo(standalone_mongo_url)
    try:
        assert not waiter.has_change_streams
        await waiter.wait_for_events(timeout_s=0.5)
        waiting = asyncio.create_task(waiter.wait_for_events(timeout_s=30))
        await asyncio.sleep(0.5)
        assert not waiting.done()

        await writer.create(scan=new_scan())

        await asyncio.wait_for(waiting, 5)
    finally:
        await waiter.aclose()
        await writer.aclose()
