"""MongoDB backend: one document per scan, atomic claims with ``find_one_and_update``, change-stream wake-ups.

Documents (``mongo_documents``): ``_id`` is the scan id string, the other fields are
named as in the scan record (DESIGN.md), datetimes are BSON dates (UTC, milliseconds).

Durability: every write uses ``w="majority", j=True`` and retryable writes.
Concurrent ``create`` calls are group-committed into one unordered
``insert_many``; the unique indexes (``_id``, idempotency key) decide races.

Claiming: MongoDB has no "update up to N documents and return them" (``update_many``
has no sort/limit and returns no documents; ``findAndModify`` touches one), so
``claim(limit=n)`` repeats an atomic ``find_one_and_update`` until it has ``n`` scans
or none is left. Each one is a single-document atomic update, which is what makes
two workers unable to take the same scan (the original system's find-then-update could).

Documents written by the original system (``{_id, status}`` only) are *adopted*:
on open and on every reaper pass one ``update_many`` fills in the missing fields
(priority 0, attempt 0, scanner ``mock``, ``created_at``/``available_at`` = the
time scanq first saw the document). Until then reads fill in the same defaults,
except that an unknown ``created_at`` reads as ``updated_at`` or else the Unix epoch.
A legacy ``Running`` document gets a lease owned by ``legacy`` that expires five
minutes after adoption, so the reaper requeues it unless the original processor
finishes it first.

Wake-up: on a replica set or sharded cluster a change stream on inserts (and updates
that make a scan Accepted or move its ``available_at``) wakes idle workers; it resumes
after errors from its resume token. A standalone server has no change streams: then
``wait_for_work`` polls for a claimable scan every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from scanq.exceptions import ScanFinished, ScanNotFound, StoreError, StoreUnavailable, ValidationError
from scanq.models import (
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Outcome,
    Page,
    Scan,
    ScanStatus,
    Stats,
)
from scanq.store.base import MAX_PAGE_SIZE, Store, decode_cursor, encode_cursor
from scanq.store.mongo_documents import (
    CLAIM_SORT,
    EPOCH,
    INDEXES,
    LEGACY_MAX_ATTEMPTS,
    WATCH_PIPELINE,
    Document,
    as_utc,
    claim_update,
    close_attempt_update,
    held_filter,
    holds,
    is_key_conflict,
    legacy_adoption,
    new_document,
    scan_from_document,
    to_bson_time,
)

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "scanq"
DEFAULT_COLLECTION = "scans"
COLLECTION_OPTION = "collection"
POLL_INTERVAL_S = 0.25
SERVER_SELECTION_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_MS = 3000
GROUP_COMMIT_MAX = 1000
CREATE_RETRIES = 5
CANCEL_RETRIES = 5
WATCH_RETRY_BASE_S = 0.1
WATCH_RETRY_MAX_S = 5.0
# The offset to the server clock is measured from ``hello.localTime`` (millisecond precision,
# plus half a round trip of error), so a smaller difference is noise: the local clock is used.
CLOCK_SKEW_IGNORED_S = 0.5
LEASE_EXPIRED_ERROR = "lease expired"
DUPLICATE_KEY = 11000
# Resuming a change stream from a token the server no longer has: start a fresh stream instead.
CHANGE_STREAM_HISTORY_LOST = 286
INVALID_RESUME_TOKEN = 260


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate PyMongo errors: connection trouble → ``StoreUnavailable``, anything else → ``StoreError``."""
    try:
        yield
    except ConnectionFailure as exc:  # AutoReconnect, NotPrimaryError, ServerSelectionTimeoutError, NetworkTimeout
        raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
    except PyMongoError as exc:
        raise StoreError(f"MongoDB error: {exc}") from exc


def split_url(url: str) -> tuple[str, str | None]:
    """Remove scanq's own query options from a MongoDB URL; return the URL for PyMongo and the collection name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    collection = next((value for key, value in query if key.lower() == COLLECTION_OPTION), None)
    kept = [(key, value) for key, value in query if key.lower() != COLLECTION_OPTION]
    return urlunsplit(parts._replace(query=urlencode(kept))), collection or None


class MongoStore(Store):
    """The Store Protocol on a MongoDB collection (replica set, sharded cluster or standalone).

    Args:
        url: ``mongodb://host:port/DATABASE?collection=NAME&…``; the database defaults to ``scanq``,
            the collection to ``scans``; every other option goes to PyMongo unchanged.
        poll_interval_s: how often ``wait_for_work`` checks for work when the server has no change streams.
        database: database name (overrides the URL path).
        collection: collection name (overrides ``?collection=``).
        client_options: more keyword arguments for ``AsyncMongoClient`` (TLS files, ``event_listeners``, …).
    """

    def __init__(
        self,
        url: str,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        database: str | None = None,
        collection: str | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.poll_interval_s = poll_interval_s
        self._client_url, url_collection = split_url(url)
        self._database_name = database
        self._collection_name = collection or url_collection or DEFAULT_COLLECTION
        self._client_options = dict(client_options or {})
        self._client: AsyncMongoClient[Document] | None = None
        self._coll: AsyncCollection[Document] | None = None
        self._clock_offset = timedelta(0)
        self.has_change_streams = False
        self._work = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._pending: list[tuple[NewScan, asyncio.Future[Created]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def collection(self) -> AsyncCollection[Document]:
        if self._coll is None:
            raise StoreError("the MongoDB store is not open")
        return self._coll

    async def open(self) -> None:
        options = dict(self._client_options)
        lowered = self._client_url.lower()
        if "serverselectiontimeoutms" not in lowered:
            options.setdefault("serverSelectionTimeoutMS", SERVER_SELECTION_TIMEOUT_MS)
        if "connecttimeoutms" not in lowered:
            options.setdefault("connectTimeoutMS", CONNECT_TIMEOUT_MS)
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            self._client_url, tz_aware=True, tzinfo=UTC, retryWrites=True, appname="scanq", **options
        )
        self._client = client
        durable = WriteConcern(w="majority", j=True)
        if self._database_name is not None:
            database = client.get_database(self._database_name, write_concern=durable)
        else:
            database = client.get_default_database(DEFAULT_DATABASE, write_concern=durable)
        self._coll = database.get_collection(self._collection_name)
        try:
            with wrap_errors():
                await self._inspect_server()
                await self._coll.create_indexes(INDEXES)
                adopted = await self._adopt_legacy()
        except BaseException:
            await self.aclose()
            raise
        if adopted:
            logger.info("adopted %d documents written without scanq's fields", adopted)
        logger.info(
            "MongoDB store %s.%s open (%s)",
            database.name,
            self._collection_name,
            "replica set: change streams, transactions" if self.has_change_streams else "standalone: polling",
        )

    async def _inspect_server(self) -> None:
        """Learn the topology (change streams and transactions need a replica set or mongos) and the clock offset."""
        assert self._client is not None
        loop = asyncio.get_running_loop()
        sent = loop.time()
        hello = await self._client.admin.command("hello")
        round_trip_s = loop.time() - sent
        self.has_change_streams = "setName" in hello or hello.get("msg") == "isdbgrid"
        server_time = as_utc(hello.get("localTime"))
        if server_time is not None:
            offset = server_time - (datetime.now(UTC) - timedelta(seconds=round_trip_s / 2))
            if abs(offset.total_seconds()) > CLOCK_SKEW_IGNORED_S:
                logger.warning("MongoDB server clock differs by %.3fs: using the server's time", offset.total_seconds())
                self._clock_offset = offset

    async def aclose(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None
        if self._client is not None:
            client, self._client, self._coll = self._client, None, None
            await client.close()

    async def ping(self) -> None:
        if self._client is None:
            raise StoreUnavailable("the MongoDB store is not open")
        with wrap_errors():
            await self._client.admin.command("ping")

    def _now(self) -> datetime:
        """The server's clock as far as it can be known (see ``CLOCK_SKEW_IGNORED_S``), to the millisecond."""
        return to_bson_time(datetime.now(UTC) + self._clock_offset)

    # -- creating -----------------------------------------------------------------------------------

    async def create(self, *, scan: NewScan) -> Created:
        future: asyncio.Future[Created] = asyncio.get_running_loop().create_future()
        self._pending.append((scan, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_creates(), name="scanq-mongo-group-commit")
        return await future

    async def _flush_creates(self) -> None:
        """Group commit: every create that arrived while the previous insert ran goes into the next one."""
        while self._pending:
            batch, self._pending = self._pending[:GROUP_COMMIT_MAX], self._pending[GROUP_COMMIT_MAX:]
            try:
                answers = await self._insert_unordered([new for new, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else StoreError("create interrupted"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _insert_unordered(self, scans: Sequence[NewScan]) -> list[Created | Exception]:
        """One ``insert_many(ordered=False)``; a duplicate key answers with the stored scan or a ValidationError."""
        now = self._now()
        docs = [new_document(new, now) for new in scans]
        failed: dict[int, Document] = {}
        with wrap_errors():
            try:
                await self.collection.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                if exc.details.get("writeConcernErrors"):
                    raise
                failed = {error["index"]: error for error in exc.details.get("writeErrors", [])}
            lost_keys = [
                new.idempotency_key
                for index, new in enumerate(scans)
                if index in failed and new.idempotency_key is not None and is_key_conflict(failed[index])
            ]
            existing = await self._find_by_keys(lost_keys)
        answers: list[Created | Exception] = []
        for index, (new, doc) in enumerate(zip(scans, docs, strict=True)):
            error = failed.get(index)
            if error is None:
                answers.append(Created(scan=scan_from_document(doc), is_new=True))
            elif error.get("code") == DUPLICATE_KEY and new.idempotency_key in existing:
                answers.append(Created(scan=existing[new.idempotency_key], is_new=False))
            elif error.get("code") == DUPLICATE_KEY and not is_key_conflict(error):
                answers.append(ValidationError(f"duplicate scan id {new.scan_id}"))
            else:
                answers.append(StoreError(f"MongoDB insert failed: {error.get('errmsg', error)}"))
        if len(failed) < len(docs):
            self._work.set()
        return answers

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        if not scans:
            return []
        for _ in range(CREATE_RETRIES):
            with wrap_errors():
                answers = await self._create_all_or_none(scans)
            if answers is not None:
                if any(answer.is_new for answer in answers):
                    self._work.set()
                return answers
        raise StoreError("create_many kept racing with concurrent submissions of the same idempotency keys")

    async def _create_all_or_none(self, scans: Sequence[NewScan]) -> list[Created] | None:
        """Insert the scans whose key is not stored yet, all or none; None when a concurrent insert took a key."""
        existing = await self._find_by_keys([new.idempotency_key for new in scans if new.idempotency_key is not None])
        now = self._now()
        answers: list[Created] = []
        docs: list[Document] = []
        batch_keys: dict[str, Scan] = {}
        seen_ids: set[str] = set()
        for new in scans:
            key = new.idempotency_key
            known = (existing.get(key) or batch_keys.get(key)) if key is not None else None
            if known is not None:
                answers.append(Created(scan=known, is_new=False))
                continue
            if new.scan_id in seen_ids:
                raise ValidationError(f"duplicate scan id {new.scan_id}")
            seen_ids.add(new.scan_id)
            doc = new_document(new, now)
            docs.append(doc)
            scan = scan_from_document(doc)
            if key is not None:
                batch_keys[key] = scan
            answers.append(Created(scan=scan, is_new=True))
        if not docs:
            return answers
        try:
            await self._insert_atomically(docs)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or errors[0].get("code") != DUPLICATE_KEY:
                raise
            if is_key_conflict(errors[0]):
                return None
            raise ValidationError(f"duplicate scan id {docs[errors[0]['index']]['_id']}") from None
        except DuplicateKeyError as exc:
            if is_key_conflict(exc.details or {}):
                return None
            raise ValidationError("duplicate scan id") from None
        return answers

    async def _insert_atomically(self, docs: list[Document]) -> None:
        """All or none: a transaction where the server has them; else insert and delete again on failure.

        A standalone server has no transactions, so there a failed batch is undone by deleting the
        documents the ordered insert already wrote (a reader may glimpse them meanwhile, and a crash
        between the two leaves them stored: the price of a standalone server).
        """
        assert self._client is not None
        collection = self.collection
        if self.has_change_streams:
            async with self._client.start_session() as session:

                async def insert(session: Any) -> None:
                    await collection.insert_many(docs, ordered=True, session=session)

                await session.with_transaction(insert, write_concern=WriteConcern(w="majority", j=True))
            return
        try:
            await collection.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            written = [doc["_id"] for doc in docs[: exc.details.get("nInserted", 0)]]
            if written:
                await collection.delete_many({"_id": {"$in": written}})
            raise

    async def _find_by_keys(self, keys: Sequence[str]) -> dict[str, Scan]:
        if not keys:
            return {}
        cursor = self.collection.find({"idempotency_key": {"$in": list(set(keys))}})
        return {doc["idempotency_key"]: scan_from_document(doc) async for doc in cursor}

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, *, scan_id: str) -> Scan:
        with wrap_errors():
            doc = await self.collection.find_one({"_id": scan_id})
        if doc is None:
            raise ScanNotFound(scan_id)
        return scan_from_document(doc)

    async def list_scans(self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        query: Document = {}
        if status is not None:
            query["status"] = status.value
        if cursor:
            query["_id"] = {"$lt": decode_cursor(cursor)}
        with wrap_errors():
            docs = await self.collection.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
        scans = [scan_from_document(doc) for doc in docs[:limit]]
        has_more = len(docs) > limit
        return Page(scans=scans, next_cursor=encode_cursor(scans[-1].scan_id) if has_more else None)

    async def stats(self) -> Stats:
        """Counts by status: one ``count_documents({status: s})`` per status, run concurrently.

        Each is answered from the ``status``-prefixed indexes alone (a covered count of index
        keys, no document is fetched), so it costs one index range per status instead of a
        scan of the collection that a ``$group`` over every document would be. The oldest
        Accepted scan is the first key of the (status, created_at) index.
        """
        collection = self.collection
        with wrap_errors():
            counts = await asyncio.gather(*(collection.count_documents({"status": s.value}) for s in ScanStatus))
            oldest = await collection.find_one(
                {"status": ScanStatus.ACCEPTED.value},
                projection={"created_at": True},
                sort=[("created_at", ASCENDING)],
            )
        oldest_at = as_utc(oldest.get("created_at")) if oldest is not None else None
        if oldest is not None and oldest_at is None:
            oldest_at = EPOCH
        return Stats(counts=dict(zip(ScanStatus, counts, strict=True)), oldest_accepted_at=oldest_at)

    # -- working ------------------------------------------------------------------------------------

    async def claim(self, *, worker_id: str, limit: int, lease_s: float) -> list[Scan]:
        """Repeat one atomic ``find_one_and_update`` per scan (see the module docstring for why)."""
        claimed: list[Scan] = []
        collection = self.collection
        with wrap_errors():
            for _ in range(limit):
                now = self._now()
                doc = await collection.find_one_and_update(
                    {"status": ScanStatus.ACCEPTED.value, "available_at": {"$lte": now}},
                    claim_update(worker_id=worker_id, now=now, lease_s=lease_s),
                    sort=CLAIM_SORT,
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    break
                claimed.append(scan_from_document(doc))
        return claimed

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        now = self._now()
        ids = [lease.scan_id for lease in leases]
        held = [held_filter(lease) for lease in leases]
        collection = self.collection
        with wrap_errors():
            await collection.update_many(
                {"_id": {"$in": ids}, "$or": held},
                {"$set": {"lease_expires_at": to_bson_time(now + timedelta(seconds=lease_s)), "updated_at": now}},
            )
            projection = {"status": True, "lease_owner": True, "attempt": True, "cancel_requested": True}
            docs = {doc["_id"]: doc async for doc in collection.find({"_id": {"$in": ids}}, projection=projection)}
        lost: set[str] = set()
        cancels: set[str] = set()
        for lease in leases:
            doc = docs.get(lease.scan_id)
            if doc is None or not holds(doc, lease):
                lost.add(lease.scan_id)
            elif doc.get("cancel_requested"):
                cancels.add(lease.scan_id)
        return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancels))

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        """One fenced ``update_one`` per outcome, sent concurrently (the result must say which ones applied)."""
        now = self._now()
        with wrap_errors():
            applied = await asyncio.gather(*(self._finish_one(fin, now=now) for fin in finishes))
        if any(a and fin.outcome == Outcome.RETRY for a, fin in zip(applied, finishes, strict=True)):
            self._work.set()
        return list(applied)

    async def _finish_one(self, fin: Finish, *, now: datetime) -> bool:
        changes: Document = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        if fin.outcome == Outcome.RETRY:
            changes |= {"status": ScanStatus.ACCEPTED.value, "available_at": to_bson_time(fin.retry_at or now)}
            changes["error"] = fin.error
        else:
            status = {
                Outcome.COMPLETE: ScanStatus.COMPLETE,
                Outcome.ERROR: ScanStatus.ERROR,
                Outcome.CANCELLED: ScanStatus.CANCELLED,
            }[fin.outcome]
            changes |= {"status": status.value, "finished_at": now}
            changes["result"] = dict(fin.result or {}) if fin.outcome == Outcome.COMPLETE else None
            changes["error"] = fin.error if fin.outcome != Outcome.COMPLETE else None
        return await self._close_attempt(fin.lease, changes, outcome=fin.outcome, at=now, error=fin.error)

    async def release(self, *, leases: Sequence[Lease]) -> int:
        now = self._now()
        with wrap_errors():
            released = await asyncio.gather(*(self._release_one(lease, now=now) for lease in leases))
        if any(status == ScanStatus.ACCEPTED for status in released):
            self._work.set()
        return sum(1 for status in released if status is not None)

    async def _release_one(self, lease: Lease, *, now: datetime) -> ScanStatus | None:
        """Return the held scan to Accepted, or make it Cancelled if its cancel was requested.

        Two fenced updates, no read: ``cancel_requested`` only ever turns on while the
        scan is Running, so a scan the first update skips for it is taken by the second.
        """
        common: Document = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        requeue: Document = {**common, "status": ScanStatus.ACCEPTED.value, "available_at": now}
        if await self._close_attempt(
            lease,
            requeue,
            outcome=Outcome.RELEASED,
            at=now,
            error=None,
            inc_attempt=-1,
            extra_filter={"cancel_requested": {"$ne": True}},
        ):
            return ScanStatus.ACCEPTED
        cancelled: Document = {**common, "status": ScanStatus.CANCELLED.value, "finished_at": now}
        if await self._close_attempt(
            lease, cancelled, outcome=Outcome.CANCELLED, at=now, error=None, extra_filter={"cancel_requested": True}
        ):
            return ScanStatus.CANCELLED
        return None

    async def _close_attempt(
        self,
        lease: Lease,
        changes: Document,
        *,
        outcome: Outcome,
        at: datetime,
        error: str | None,
        inc_attempt: int = 0,
        extra_filter: Document | None = None,
    ) -> bool:
        """Apply ``changes`` if ``lease`` still holds the scan, closing its open history entry; True if it did."""
        update, array_filters = close_attempt_update(
            changes, attempt=lease.attempt, outcome=outcome, at=at, error=error, inc_attempt=inc_attempt
        )
        result = await self.collection.update_one(
            {**held_filter(lease), **(extra_filter or {})},
            update,
            array_filters=array_filters,
        )
        return result.modified_count == 1

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        now = self._now()
        projection = {"lease_owner": True, "attempt": True, "max_attempts": True, "cancel_requested": True}
        with wrap_errors():
            await self._adopt_legacy()
            cursor = self.collection.find(
                {"status": ScanStatus.RUNNING.value, "lease_expires_at": {"$lte": now}}, projection=projection
            ).limit(limit)
            expired = await cursor.to_list()
            handled = await asyncio.gather(*(self._requeue_one(doc, now=now) for doc in expired))
        if any(requeued == ScanStatus.ACCEPTED for requeued in handled):
            self._work.set()
        return sum(1 for status in handled if status is not None)

    async def _requeue_one(self, doc: Document, *, now: datetime) -> ScanStatus | None:
        lease = Lease(scan_id=doc["_id"], worker_id=doc.get("lease_owner") or "", attempt=doc.get("attempt", 0))
        common: Document = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        if doc.get("cancel_requested"):
            status = ScanStatus.CANCELLED
            changes = {**common, "status": status.value, "finished_at": now}
        elif lease.attempt < doc.get("max_attempts", LEGACY_MAX_ATTEMPTS):
            status = ScanStatus.ACCEPTED
            changes = {**common, "status": status.value, "available_at": now}
        else:
            status = ScanStatus.ERROR
            changes = {**common, "status": status.value, "error": LEASE_EXPIRED_ERROR, "finished_at": now}
        is_applied = await self._close_attempt(
            lease,
            changes,
            outcome=Outcome.LEASE_EXPIRED,
            at=now,
            error=LEASE_EXPIRED_ERROR,
            extra_filter={"lease_expires_at": {"$lte": now}},
        )
        return status if is_applied else None

    async def cancel(self, *, scan_id: str) -> Scan:
        collection = self.collection
        for _ in range(CANCEL_RETRIES):
            now = self._now()
            with wrap_errors():
                doc = await collection.find_one_and_update(
                    {"_id": scan_id, "status": ScanStatus.ACCEPTED.value},
                    {"$set": {"status": ScanStatus.CANCELLED.value, "finished_at": now, "updated_at": now}},
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    doc = await collection.find_one_and_update(
                        {"_id": scan_id, "status": ScanStatus.RUNNING.value},
                        {"$set": {"cancel_requested": True, "updated_at": now}},
                        return_document=ReturnDocument.AFTER,
                    )
            if doc is not None:
                return scan_from_document(doc)
            scan = await self.get(scan_id=scan_id)
            if scan.status.is_terminal:
                raise ScanFinished(scan_id, scan.status)
            # It moved between Accepted and Running while we looked: try again.
        raise StoreError(f"scan {scan_id} kept changing state while being cancelled")

    # -- wake-up ------------------------------------------------------------------------------------

    async def wait_for_work(self, *, timeout_s: float) -> None:
        if not self.has_change_streams:
            await self._poll_for_work(timeout_s=timeout_s)
            return
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="scanq-mongo-change-stream")
        try:
            await asyncio.wait_for(self._work.wait(), timeout_s)
        except TimeoutError:
            return
        finally:
            # Every return is followed by a claim, so an event seen now is not lost by clearing it.
            self._work.clear()

    async def _poll_for_work(self, *, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self.poll_interval_s, remaining))
            with wrap_errors():
                found = await self.collection.find_one(
                    {"status": ScanStatus.ACCEPTED.value, "available_at": {"$lte": self._now()}},
                    projection={"_id": True},
                )
            if found is not None:
                return

    async def _watch(self) -> None:
        """Wake waiters on every change event that may mean claimable work; resume after errors."""
        collection = self.collection
        logger.info("wake-up: change stream on %s.%s", collection.database.name, collection.name)
        token: Mapping[str, Any] | None = None
        failures = 0
        while True:
            try:
                async with await collection.watch(WATCH_PIPELINE, resume_after=token) as stream:
                    # Work that arrived before the stream was open is claimable now: let waiters look.
                    self._work.set()
                    failures = 0
                    async for _ in stream:
                        token = stream.resume_token
                        self._work.set()
            except OperationFailure as exc:
                if exc.code in (CHANGE_STREAM_HISTORY_LOST, INVALID_RESUME_TOKEN):
                    logger.warning("change stream cannot resume (%s): starting a new one", exc)
                    token = None
                failures += 1
                await self._watch_pause(exc, failures)
            except PyMongoError as exc:
                failures += 1
                await self._watch_pause(exc, failures)

    async def _watch_pause(self, exc: Exception, failures: int) -> None:
        delay = min(WATCH_RETRY_MAX_S, WATCH_RETRY_BASE_S * 2 ** min(failures - 1, 10))
        logger.warning("change stream failed (%s); resuming in %.1fs", exc, delay)
        # Events may have been missed meanwhile: let waiters look for work.
        self._work.set()
        await asyncio.sleep(delay)

    async def _adopt_legacy(self) -> int:
        """Fill in scanq's fields on documents of the original system (see ``legacy_adoption``)."""
        query, update = legacy_adoption(self._now())
        result = await self.collection.update_many(query, update)
        return result.modified_count


__all__ = ["MongoStore", "split_url", "wrap_errors"]
