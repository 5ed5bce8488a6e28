"""MongoDB backend: one document per scan, atomic claims with ``find_one_and_update``, change-stream wake-ups.

Durability: every write uses ``w="majority", j=True`` and retryable writes.
Concurrent ``create`` calls are group-committed into one unordered
``insert_many`` (``inserts``); the unique indexes (``_id``, idempotency key) decide races.

Claiming: MongoDB has no "update up to N documents and return them" (``update_many``
has no sort/limit and returns no documents; ``findAndModify`` touches one), so
``claim(limit=n)`` repeats an atomic ``find_one_and_update`` until it has ``n`` scans
or none is left. Each one is a single-document atomic update, which is what makes
two workers unable to take the same scan (the original system's find-then-update could).
Fair keys (rule 9) are reserved in ``fairness``; a claim with ``max_per_target`` takes
target slots first (``slots``), and a scan leaving Running gives its slot back.

The documents are described in ``rows``, the statements in ``statements``, the
indexes and the changes an older collection needs in ``schema``, the adoption of the
original system's documents in ``legacy``, the wake-up in ``wakeup``, the operations
on finished scans (counts, export, retention) in ``finished``, the API tokens and
tenant limits in ``accounts``, the event log in ``eventlog`` and ``events`` (every status
change appends its event to the scan's outbox in the same update) and the webhooks in ``webhooks``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from scanq import lifecycle
from scanq.exceptions import ScanFinished, ScanNotFound, StoreError, StoreUnavailable
from scanq.lifecycle import CancelAction
from scanq.models import Actor, Created, Finish, HeartbeatResult, Lease, NewScan, Outcome, Page, Scan, ScanStatus, Stats
from scanq.store.base import MAX_PAGE_SIZE, Store, decode_cursor, encode_cursor
from scanq.store.group_commit import GroupCommit
from scanq.store.mongo import slots
from scanq.store.mongo import statements as st
from scanq.store.mongo.accounts import AccountsMixin
from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.events import EventsMixin
from scanq.store.mongo.finished import FinishedScans
from scanq.store.mongo.inserts import DURABLE, insert_all_or_none, insert_unordered
from scanq.store.mongo.legacy import adopt_legacy
from scanq.store.mongo.options import DEFAULT_DATABASE, parse_url
from scanq.store.mongo.outbox import Outbox
from scanq.store.mongo.rows import EPOCH, Document, as_utc, scan_from_document, tenant_of, to_bson_time
from scanq.store.mongo.schema import prepare
from scanq.store.mongo.server import inspect_server
from scanq.store.mongo.wakeup import ChangeStreamWatcher, EventSignal
from scanq.store.mongo.webhooks import WebhooksMixin

logger = logging.getLogger(__name__)

SERVER_SELECTION_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_MS = 3000
GROUP_COMMIT_MAX = 1000
CREATE_RETRIES = 5
CANCEL_RETRIES = 5


class MongoStore(FinishedScans, AccountsMixin, EventsMixin, WebhooksMixin, Store):
    """The Store Protocol on a MongoDB collection (replica set, sharded cluster or standalone).

    Args:
        url: ``mongodb://host:port/DATABASE?collection=NAME&poll_interval_s=S&…``; the database defaults
            to ``scanq``; scanq's options are ``MongoOptions``, every other one goes to PyMongo unchanged.
        database: database name (overrides the URL path).
        collection: collection name (overrides ``?collection=``).
        client_options: more keyword arguments for ``AsyncMongoClient`` (TLS files, ``event_listeners``, …).
        poll_interval_s: overrides ``?poll_interval_s=``.
    """

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        collection: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.url = url
        self._client_url, self.options = parse_url(url, collection=collection or None, poll_interval_s=poll_interval_s)
        self._database_name = database
        self._client_options = dict(client_options or {})
        self._client: AsyncMongoClient[Document] | None = None
        self._coll: AsyncCollection[Document] | None = None
        self._clock_offset = timedelta(0)
        self.has_change_streams = False
        self._wakeup = ChangeStreamWatcher(poll_interval_s=self.options.poll_interval_s)
        self._event_signal = EventSignal(poll_interval_s=self.options.poll_interval_s)
        self._outbox = Outbox()
        self._group = GroupCommit[Created](
            self._insert_unordered, max_batch=GROUP_COMMIT_MAX, in_flight=1, split_on_error=False
        )

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection of scans; ``StoreError`` while the store is not open."""
        if self._coll is None:
            raise StoreError("the MongoDB store is not open")
        return self._coll

    @property
    def target_slots(self) -> AsyncCollection[Document]:
        """The Running scans of each target (``slots``), beside the scans."""
        return self.collection.database.get_collection(self.collection.name + slots.SLOTS_SUFFIX)

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
        if self._database_name is not None:
            database = client.get_database(self._database_name, write_concern=DURABLE)
        else:
            database = client.get_default_database(DEFAULT_DATABASE, write_concern=DURABLE)
        self._coll = database.get_collection(self.options.collection)
        try:
            with wrap_errors():
                self.has_change_streams, self._clock_offset = await inspect_server(client)
                await prepare(self._coll, now=self._now())
                adopted = await adopt_legacy(self._coll, now=self._now())
        except BaseException:
            await self.aclose()
            raise
        self._wakeup.start(self._coll, is_watching=self.has_change_streams, now=self._now)
        self._event_signal.start(self._coll, self.events, is_watching=self.has_change_streams)
        if adopted:
            logger.info("adopted %d documents written without scanq's fields", adopted)
        logger.info(
            "MongoDB store %s.%s open (%s)",
            database.name,
            self.options.collection,
            "replica set: change streams, transactions" if self.has_change_streams else "standalone: polling",
        )

    async def aclose(self) -> None:
        await self._group.drain()
        await self._wakeup.aclose()
        await self._event_signal.aclose()
        await self._outbox.aclose()
        if self._client is not None:
            client, self._client, self._coll = self._client, None, None
            await client.close()

    async def ping(self) -> None:
        if self._client is None:
            raise StoreUnavailable("the MongoDB store is not open")
        with wrap_errors():
            await self._client.admin.command("ping")

    def _now(self) -> datetime:
        """The server's clock as far as it can be known (``server.inspect_server``), to the millisecond."""
        return to_bson_time(datetime.now(UTC) + self._clock_offset)

    # -- creating -----------------------------------------------------------------------------------

    async def create(self, *, scan: NewScan) -> Created:
        return await self._group.submit(scan)

    async def _insert_unordered(self, scans: Sequence[NewScan]) -> list[Created | Exception]:
        answers = await insert_unordered(self.collection, scans, now=self._now(), clocks=self.tenant_clocks)
        if any(isinstance(answer, Created) and answer.is_new for answer in answers):
            self._wakeup.wake()
            self._event_signal.notify()
        return answers

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        if not scans:
            return []
        # Transactions need a replica set or mongos, as change streams do.
        client = self._client if self.has_change_streams else None
        for _ in range(CREATE_RETRIES):
            with wrap_errors():
                answers = await insert_all_or_none(
                    self.collection, scans, now=self._now(), client=client, clocks=self.tenant_clocks
                )
            if answers is not None:
                if any(answer.is_new for answer in answers):
                    self._wakeup.wake()
                    self._event_signal.notify()
                return answers
        raise StoreError("create_many kept racing with concurrent submissions of the same idempotency keys")

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        with wrap_errors():
            doc = await self.collection.find_one({"_id": scan_id})
        if doc is None or (tenant is not None and tenant_of(doc) != tenant):
            raise ScanNotFound(scan_id)
        return scan_from_document(doc)

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        query: Document = {}
        if tenant is not None:
            query = st.tenant_query(tenant, status)
        elif status is not None:
            query["status"] = status.value
        if cursor:
            query["_id"] = {"$lt": decode_cursor(cursor)}
        with wrap_errors():
            docs = await self.collection.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
        scans = [scan_from_document(doc) for doc in docs[:limit]]
        has_more = len(docs) > limit
        return Page(scans=scans, next_cursor=encode_cursor(scans[-1].scan_id) if has_more else None)

    async def stats(self, *, tenant: str | None = None) -> Stats:
        """Counts by status: one ``count_documents({status: s})`` per status, run concurrently.

        Each is answered from the ``status``-prefixed indexes alone (a covered count of index
        keys, no document is fetched), so it costs one index range per status instead of a
        scan of the collection that a ``$group`` over every document would be. The oldest
        Accepted scan is the first key of the (status, created_at) index. For one tenant the
        same, on its ranges of the ``tenant_status`` and ``tenant_oldest_accepted`` indexes.
        """
        collection = self.collection
        of_tenant: Document = {} if tenant is None else {"tenant": tenant}
        with wrap_errors():
            counts = await asyncio.gather(
                *(collection.count_documents({**of_tenant, "status": s.value}) for s in ScanStatus)
            )
            oldest = await collection.find_one(
                {**of_tenant, "status": ScanStatus.ACCEPTED.value},
                projection={"created_at": True},
                sort=[("created_at", ASCENDING)],
            )
        oldest_at = as_utc(oldest.get("created_at")) if oldest is not None else None
        if oldest is not None and oldest_at is None:
            oldest_at = EPOCH
        return Stats(counts=dict(zip(ScanStatus, counts, strict=True)), oldest_accepted_at=oldest_at)

    # -- working ------------------------------------------------------------------------------------

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        """Repeat one atomic ``find_one_and_update`` per scan (module docstring); with a cap, in ``slots``'s rounds."""
        with wrap_errors():
            claimed = await slots.claim(
                self.collection,
                self.target_slots,
                worker_id,
                limit=limit,
                lease_s=lease_s,
                cap=max_per_target,
                now=self._now,
            )
        if claimed:
            self._event_signal.notify()
        return claimed

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        now = self._now()
        collection = self.collection
        with wrap_errors():
            await collection.update_many(st.heartbeat_filter(leases), st.extend_lease_update(now=now, lease_s=lease_s))
            found = collection.find({"_id": {"$in": [lease.scan_id for lease in leases]}}, st.HEARTBEAT_PROJECTION)
            docs = {doc["_id"]: doc async for doc in found}
        lost: set[str] = set()
        cancels: set[str] = set()
        for lease in leases:
            doc = docs.get(lease.scan_id)
            if doc is None or not st.holds(doc, lease):
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
            self._wakeup.wake()
        if any(applied):
            self._event_signal.notify()
        return list(applied)

    async def _finish_one(self, fin: Finish, *, now: datetime) -> bool:
        update, array_filters = st.transition_update(
            lifecycle.FINISH[fin.outcome],
            attempt=fin.lease.attempt,
            now=now,
            error=fin.error,
            result=fin.result,
            retry_at=fin.retry_at,
        )
        return await self._update_held(fin.lease, update, array_filters)

    async def release(self, *, leases: Sequence[Lease]) -> int:
        now = self._now()
        with wrap_errors():
            released = await asyncio.gather(*(self._release_one(lease, now=now) for lease in leases))
        if any(status == ScanStatus.ACCEPTED for status in released):
            self._wakeup.wake()
        if any(status is not None for status in released):
            self._event_signal.notify()
        return sum(1 for status in released if status is not None)

    async def _release_one(self, lease: Lease, *, now: datetime) -> ScanStatus | None:
        """Carry out the first ``lifecycle.RELEASE`` rule whose condition the held scan meets; no read.

        One fenced update per rule, each filtered by its condition, tried from the last rule to
        the first: a condition only ever turns on while the scan is held (``cancel_requested``),
        so a scan that slips past a later rule's update meanwhile is taken by an earlier rule's.
        """
        for transition, condition in reversed(st.rule_filters(lifecycle.RELEASE)):
            update, array_filters = st.transition_update(transition, attempt=lease.attempt, now=now)
            if await self._update_held(lease, update, array_filters, condition):
                return transition.status
        return None

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        now = self._now()
        with wrap_errors():
            await adopt_legacy(self.collection, now=now)
            cursor = self.collection.find(st.expired_filter(now), projection=st.EXPIRED_PROJECTION).limit(limit)
            expired = await cursor.to_list()
            handled = await asyncio.gather(*(self._requeue_one(doc, now=now) for doc in expired))
            await slots.repair(self.collection, self.target_slots, now=now)
        if any(requeued == ScanStatus.ACCEPTED for requeued in handled):
            self._wakeup.wake()
        if any(status is not None for status in handled):
            self._event_signal.notify()
        return sum(1 for status in handled if status is not None)

    async def _requeue_one(self, doc: Document, *, now: datetime) -> ScanStatus | None:
        lease = Lease(scan_id=doc["_id"], worker_id=doc.get("lease_owner") or "", attempt=doc.get("attempt", 0))
        transition = lifecycle.choose(lifecycle.LEASE_EXPIRED, scan_from_document(doc))
        update, array_filters = st.transition_update(transition, attempt=lease.attempt, now=now)
        is_applied = await self._update_held(lease, update, array_filters, st.expired_filter(now))
        return transition.status if is_applied else None

    async def _update_held(
        self, lease: Lease, update: Document, array_filters: list[Document], condition: Document | None = None
    ) -> bool:
        """Apply ``update`` if ``lease`` still holds the scan (and it meets ``condition``); True if it did.

        The scan leaves Running: it gives back its target slot (``slots``), if it has a target.
        """
        doc = await self.collection.find_one_and_update(
            {**st.held_filter(lease), **(condition or {})},
            update,
            projection=st.SLOT_PROJECTION,
            array_filters=array_filters,
        )
        if doc is None:
            return False
        if doc.get("target_key") is not None:
            await slots.give_back(self.target_slots, doc["target_key"], lease.scan_id, doc.get("slot_token"))
        return True

    async def cancel(self, *, scan_id: str, tenant: str | None = None, by: Actor | None = None) -> Scan:
        collection = self.collection
        of_tenant = st.scan_of_tenant(scan_id, tenant)
        for _ in range(CANCEL_RETRIES):
            now = self._now()
            doc: Document | None = None
            with wrap_errors():
                for status in lifecycle.CANCELLABLE_STATUSES:
                    update = st.cancel_update(lifecycle.cancel_action(status), now=now, by=by)
                    doc = await collection.find_one_and_update(
                        {**of_tenant, "status": status.value}, update, return_document=ReturnDocument.AFTER
                    )
                    if doc is not None:
                        if lifecycle.cancel_action(status) is CancelAction.CANCEL_NOW:
                            self._event_signal.notify()  # a request changes no status: no event
                        return scan_from_document(doc)
            scan = await self.get(scan_id=scan_id, tenant=tenant)
            if lifecycle.cancel_action(scan.status) is CancelAction.REFUSE:
                raise ScanFinished(scan_id, scan.status)
            # It moved between Accepted and Running while we looked: try again.
        raise StoreError(f"scan {scan_id} kept changing state while being cancelled")

    # -- wake-up ------------------------------------------------------------------------------------

    async def wait_for_work(self, *, timeout_s: float) -> None:
        await self._wakeup.wait(timeout_s=timeout_s)


__all__ = ["MongoStore"]
