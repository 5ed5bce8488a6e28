"""What only the MongoDB store does: documents, indexes, URLs, group commit, standalone servers, outages."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from scanq.exceptions import ScanNotFound, StoreUnavailable, ValidationError
from scanq.ids import new_scan_id
from scanq.models import Lease, NewScan, ScanStatus
from scanq.store import open_store
from scanq.store.mongo import MongoStore, split_url
from tests.servers.availability import backend_unavailable
from tests.servers.mongo import free_port

Document = dict[str, Any]


def new_scan(**fields: Any) -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), **fields)


@pytest.fixture
async def raw(mongo_database_url: str) -> AsyncIterator[AsyncCollection[Document]]:
    """The store's collection through PyMongo directly, to check what is really stored."""
    client_url, collection = split_url(mongo_database_url)
    client: AsyncMongoClient[Document] = AsyncMongoClient(client_url, tz_aware=True)
    yield client.get_default_database()[collection or "scans"]
    await client.close()


class InsertCounter(CommandListener):
    """Counts the insert commands a client sends (PyMongo's command monitoring)."""

    def __init__(self) -> None:
        self.inserts = 0

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.inserts += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def test_split_url_strips_scanq_options_only() -> None:
    url, collection = split_url("mongodb://a:1,b:2/at_bay_db?replicaSet=rs0&collection=scans&w=majority")
    assert url == "mongodb://a:1,b:2/at_bay_db?replicaSet=rs0&w=majority"
    assert collection == "scans"
    assert split_url("mongodb://127.0.0.1:27017") == ("mongodb://127.0.0.1:27017", None)


async def test_open_creates_the_indexes(mongo_database_url: str, raw: AsyncCollection[Document]) -> None:
    async with open_store(mongo_database_url):
        indexes = await raw.index_information()

    assert indexes["fair_claim"]["key"] == [
        ("status", 1),
        ("priority", -1),
        ("fair_key", 1),
        ("_id", 1),
        ("available_at", 1),
    ]
    assert "claim" not in indexes  # replaced by fair_claim (Store rule 9)
    assert indexes["list_by_status"]["key"] == [("status", 1), ("_id", -1)]
    assert indexes["oldest_by_status"]["key"] == [("status", 1), ("created_at", 1)]
    # A key is unique within its tenant: two tenants may use the same one.
    assert "idempotency_key" not in indexes
    assert indexes["tenant_idempotency_key"]["key"] == [("tenant", 1), ("idempotency_key", 1)]
    assert indexes["tenant_idempotency_key"]["unique"] is True
    assert indexes["tenant_idempotency_key"]["partialFilterExpression"] == {"idempotency_key": {"$type": "string"}}
    assert indexes["tenant_status"]["key"] == [("tenant", 1), ("status", 1), ("_id", -1)]
    assert indexes["tenant_oldest_accepted"]["key"] == [("tenant", 1), ("created_at", 1)]


async def test_documents_use_the_scan_record_fields(mongo_database_url: str, raw: AsyncCollection[Document]) -> None:
    async with open_store(mongo_database_url) as store:
        plain = await store.create(scan=new_scan(target="example.com", options={"ports": [443]}))
        keyed = await store.create(scan=new_scan(idempotency_key="order-1"))
        [claimed] = await store.claim(worker_id="w1", limit=1, lease_s=5)

        doc = await raw.find_one({"_id": plain.scan.scan_id})
        keyed_doc = await raw.find_one({"_id": keyed.scan.scan_id})

    assert doc is not None and keyed_doc is not None
    assert claimed.scan_id == plain.scan.scan_id
    assert doc["status"] == "Running"
    assert doc["target"] == "example.com"
    assert doc["options"] == {"ports": [443]}
    assert doc["lease_owner"] == "w1"
    assert doc["attempt"] == 1
    assert isinstance(doc["created_at"], datetime) and isinstance(doc["lease_expires_at"], datetime)
    assert doc["history"] == [
        {
            "attempt": 1,
            "worker": "w1",
            "started_at": doc["started_at"],
            "finished_at": None,
            "outcome": None,
            "error": None,
        }
    ]
    assert "idempotency_key" not in doc  # absent, not null: the unique index is partial
    assert keyed_doc["idempotency_key"] == "order-1"
    # What create answered is what is stored (datetimes are kept to the millisecond BSON holds).
    assert keyed.scan.created_at == keyed_doc["created_at"]


async def test_database_and_collection_from_url_or_arguments(mongo_database_url: str) -> None:
    client_url, _ = split_url(mongo_database_url)
    database = client_url.rsplit("/", 1)[1].split("?", 1)[0]
    async with MongoStore(mongo_database_url.replace("collection=scans", "collection=legacy_scans")) as by_url:
        created = await by_url.create(scan=new_scan())
    async with MongoStore(client_url, collection="legacy_scans") as by_argument:
        assert (await by_argument.get(scan_id=created.scan.scan_id)).scan_id == created.scan.scan_id
    async with MongoStore(client_url, database=database, collection="other") as elsewhere:
        with pytest.raises(ScanNotFound):
            await elsewhere.get(scan_id=created.scan.scan_id)


async def test_concurrent_creates_share_insert_commands(mongo_database_url: str) -> None:
    counter = InsertCounter()
    async with MongoStore(mongo_database_url, client_options={"event_listeners": [counter]}) as store:
        before = counter.inserts
        created = await asyncio.gather(*(store.create(scan=new_scan()) for _ in range(40)))
        inserts = counter.inserts - before
        page = await store.list_scans(limit=100)

    assert all(c.is_new for c in created)
    assert {s.scan_id for s in page.scans} == {c.scan.scan_id for c in created}
    assert inserts <= 3, inserts  # one for the first create, one for everything that queued behind it


async def test_group_commit_answers_each_caller_on_its_own(mongo_database_url: str) -> None:
    async with open_store(mongo_database_url) as store:
        existing = await store.create(scan=new_scan())
        answers = await asyncio.gather(
            store.create(scan=new_scan(idempotency_key="k")),
            store.create(scan=new_scan(idempotency_key="k")),
            store.create(scan=NewScan(scan_id=existing.scan.scan_id, created_at=datetime.now(UTC))),
            store.create(scan=new_scan()),
            return_exceptions=True,
        )

    first, replay, duplicate, other = answers
    assert not isinstance(first, BaseException) and not isinstance(replay, BaseException)
    assert first.is_new and not replay.is_new and replay.scan == first.scan
    assert isinstance(duplicate, ValidationError)
    assert not isinstance(other, BaseException) and other.is_new


@pytest.mark.slow
@pytest.mark.parametrize("server", ["replica_set", "standalone"])
async def test_create_many_is_all_or_none(server: str, request: pytest.FixtureRequest) -> None:
    fixture = "mongo_database_url" if server == "replica_set" else "standalone_mongo_url"
    url: str = request.getfixturevalue(fixture)
    async with open_store(url) as store:
        assert isinstance(store, MongoStore)
        if server == "replica_set" and not store.has_change_streams:
            backend_unavailable("the MongoDB test server is standalone: this case needs a replica set (transactions)")
        assert store.has_change_streams is (server == "replica_set")
        taken = await store.create(scan=new_scan())
        fresh = [new_scan(), new_scan()]
        with pytest.raises(ValidationError):
            await store.create_many(scans=[*fresh, NewScan(scan_id=taken.scan.scan_id, created_at=datetime.now(UTC))])
        for scan in fresh:
            with pytest.raises(ScanNotFound):
                await store.get(scan_id=scan.scan_id)
        stats = await store.stats()
    assert stats.counts[ScanStatus.ACCEPTED] == 1


async def test_fencing_rejects_a_stale_attempt(mongo_database_url: str, raw: AsyncCollection[Document]) -> None:
    async with open_store(mongo_database_url) as store:
        created = await store.create(scan=new_scan())
        await store.claim(worker_id="w1", limit=1, lease_s=0.05)
        await asyncio.sleep(0.1)
        assert await store.requeue_expired() == 1
        [again] = await store.claim(worker_id="w2", limit=1, lease_s=5)
        stale = Lease(scan_id=created.scan.scan_id, worker_id="w1", attempt=1)

        assert await store.release(leases=[stale]) == 0
        beat = await store.heartbeat(leases=[stale], lease_s=5)
        doc = await raw.find_one({"_id": created.scan.scan_id})

    assert beat.lost == {created.scan.scan_id}
    assert again.attempt == 2
    assert doc is not None and doc["lease_owner"] == "w2" and doc["attempt"] == 2
    assert [entry["outcome"] for entry in doc["history"]] == ["LeaseExpired", None]


UNREACHABLE_REPORTED_WITHIN_S = 10.0


async def test_unreachable_server_is_reported_quickly() -> None:
    store = MongoStore(f"mongodb://127.0.0.1:{free_port()}/scanq?serverSelectionTimeoutMS=300")
    started = time.monotonic()
    with warnings.catch_warnings():
        # PyMongo's async client sometimes drops the socket of a refused connection without closing it
        # (upstream PYTHON-5867); collect it here so its ResourceWarning does not land in a later test.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(StoreUnavailable):
            await store.open()
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
        gc.collect()
    # Far below PyMongo's default 30 s server selection: the URL's 300 ms was honoured, even on a loaded machine.
    assert elapsed < UNREACHABLE_REPORTED_WITHIN_S


async def test_reads_fill_in_what_a_partial_document_lacks(
    mongo_database_url: str, raw: AsyncCollection[Document]
) -> None:
    async with open_store(mongo_database_url) as store:
        scan_id = new_scan_id()
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await raw.insert_one({"_id": scan_id, "status": "Error", "error": "timeout", "updated_at": when})
        scan = await store.get(scan_id=scan_id)

    assert scan.status == ScanStatus.ERROR
    assert (scan.scanner, scan.attempt, scan.max_attempts, scan.priority, scan.history) == ("mock", 0, 3, 0, ())
    assert scan.created_at == when and scan.available_at == when


async def test_scans_written_before_fair_keys_keep_their_order(
    mongo_database_url: str, raw: AsyncCollection[Document]
) -> None:
    async with open_store(mongo_database_url):
        pass
    # The collection as an older scanq left it: the old claim index, live scans without a fair key.
    await raw.drop_index("fair_claim")
    await raw.create_index([("status", 1), ("priority", -1), ("_id", 1), ("available_at", 1)], name="claim")
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with open_store(mongo_database_url) as store:
        first, second = (await store.create(scan=new_scan())).scan, (await store.create(scan=new_scan())).scan
    for scan_id, minutes in ((second.scan_id, 2), (first.scan_id, 1)):
        await raw.update_one(
            {"_id": scan_id}, {"$set": {"created_at": old + timedelta(minutes=minutes)}, "$unset": {"fair_key": ""}}
        )

    async with open_store(mongo_database_url) as store:
        newer = (await store.create(scan=new_scan())).scan
        claimed = await store.claim(worker_id="w1", limit=3, lease_s=5)
        indexes = await raw.index_information()
        doc = await raw.find_one({"_id": first.scan_id})

    assert [scan.scan_id for scan in claimed] == [first.scan_id, second.scan_id, newer.scan_id]
    assert doc is not None and doc["fair_key"] == (old + timedelta(minutes=1)).timestamp()
    assert "claim" not in indexes and "fair_claim" in indexes


async def test_the_reaper_gives_back_a_slot_no_running_scan_holds(
    mongo_database_url: str, raw: AsyncCollection[Document]
) -> None:
    slots = raw.database[raw.name + "_target_slots"]
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with open_store(mongo_database_url) as store:
        waiting = [(await store.create(scan=new_scan(target_key="a.example"))).scan for _ in range(3)]
        [running] = await store.claim(worker_id="w1", limit=1, lease_s=60, max_per_target=2)
        # A claimer that died between taking a slot and claiming its scan; the Running scan's entry is old too.
        stalled = next(scan for scan in waiting if scan.scan_id != running.scan_id)
        await slots.update_one({"_id": "a.example"}, {"$set": {"holders.$[].at": long_ago}})
        entry = {"s": stalled.scan_id, "t": "dead-claimer", "at": long_ago}
        await slots.update_one({"_id": "a.example"}, {"$push": {"holders": entry}})
        assert await store.claim(worker_id="w2", limit=3, lease_s=60, max_per_target=2) == []

        await store.requeue_expired()

        again = await store.claim(worker_id="w2", limit=3, lease_s=60, max_per_target=2)
        stalled_doc = await raw.find_one({"_id": stalled.scan_id})
        slot = await slots.find_one({"_id": "a.example"})

    assert len(again) == 1
    assert stalled_doc is not None and "dead-claimer" in stalled_doc.get("slot_revoked", [])
    assert slot is not None
    assert sorted(entry["s"] for entry in slot["holders"]) == sorted([running.scan_id, again[0].scan_id])
    assert all(entry["at"] > long_ago + timedelta(minutes=30) for entry in slot["holders"])  # the live ones restamped
