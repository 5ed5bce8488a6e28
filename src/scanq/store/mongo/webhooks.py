"""MongoDB: webhook endpoints and deliveries (``Store`` rule 11), in two collections beside the scans.

``<collection>_webhook_endpoints``: one document per endpoint, ``_id`` its id, with ``tenant``, ``url`` (null
for the tenant's callback endpoint),
``event_types`` (a sorted list of ``EventType`` values), ``description``, ``secret``, ``previous_secret``,
``previous_secret_until``, ``created_at`` and ``updated_at``.

``<collection>_webhook_deliveries``: one document per event owed to an endpoint, keyed by
(``endpoint_id``, ``seq``: the event's number; unique), with a copy of the event (``event``: pruning
the log never breaks a delivery), ``url`` (a callback delivery's scan's ``callback_url``, else null),
``status``, ``attempts``, the times and the last report, and the lease (``lease_owner``,
``lease_expires_at``). Ended ones are deleted by ``prune_deliveries``, oldest last attempt first.

Without multi-document transactions, dispatching is idempotent steps under the ``WEBHOOK_ROLE``
check (read first, as ``prune`` reads ``RETENTION_ROLE``): insert one delivery per (endpoint, event)
(one unordered ``insert_many``; the unique ``endpoint_event`` index refuses one that exists, which is
left as it is), then move the cursor (``$max``: never back). A dispatcher that stops between the two
steps, or one that lost the role and runs on, repeats inserts that are refused. Claiming repeats
an atomic ``find_one_and_update`` (as claiming scans does), so two claimers never get the same
delivery; reports are fenced by the lease's owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from scanq.exceptions import DeliveryNotFound, EndpointNotFound, ValidationError
from scanq.models import (
    Delivery,
    DeliveryJob,
    DeliveryResult,
    DeliveryStatus,
    WebhookEndpoint,
)
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.delivery_rules import answers, first_results
from scanq.store.mongo import eventlog
from scanq.store.mongo.errors import DUPLICATE_KEY, wrap_errors
from scanq.store.mongo.eventlog import DISPATCH_MARK
from scanq.store.mongo.events import ENDED_DELIVERIES
from scanq.store.mongo.rows import Document, to_bson_time
from scanq.store.mongo.webhook_rows import (
    PENDING,
    delivery_document,
    delivery_from_document,
    endpoint_document,
    endpoint_from_document,
    event_seq,
    is_due_to,
    owed_deliveries,
    record_update,
)

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

ENDPOINTS_SUFFIX = "_webhook_endpoints"
ENDPOINT_ORDER = [("created_at", ASCENDING), ("_id", ASCENDING)]
ENDPOINT_INDEXES = [IndexModel([("tenant", ASCENDING), *ENDPOINT_ORDER], name="tenant_created")]
CLAIM_ORDER = [("next_attempt_at", ASCENDING), ("seq", ASCENDING)]
DELIVERY_INDEXES = [
    # At most one delivery of an event to an endpoint; an endpoint's deliveries, newest event first.
    IndexModel([("endpoint_id", ASCENDING), ("seq", ASCENDING)], name="endpoint_event", unique=True),
    # Claims: the due pending deliveries, earliest first (only pending ones are in it).
    IndexModel([("status", ASCENDING), *CLAIM_ORDER], name="due_pending", partialFilterExpression={"status": PENDING}),
    # Retention (``prune_deliveries``): the ended deliveries by their last attempt.
    IndexModel([("status", ASCENDING), ("last_attempt_at", ASCENDING)], name="ended_by_attempt"),
]
# Indexes of an older scanq that ``schema.prepare`` drops: the retention of deliveries with their events.
REPLACED_DELIVERY_INDEXES = ("ended_by_event",)


class WebhooksMixin:
    """The webhook operations of the ``Store`` contract, on MongoDB."""

    if TYPE_CHECKING:

        @property
        def collection(self) -> AsyncCollection[Document]: ...

        @property
        def events(self) -> AsyncCollection[Document]: ...

        @property
        def event_marks(self) -> AsyncCollection[Document]: ...

        @property
        def deliveries(self) -> AsyncCollection[Document]: ...

        def _now(self) -> datetime: ...

        async def _flush_events(self) -> None: ...

        async def _holds_role(self, role: str, owner: str) -> bool: ...

        async def _mark(self, name: str) -> int | None: ...

    @property
    def endpoints(self) -> AsyncCollection[Document]:
        """The webhook endpoints, beside the scans."""
        scans = self.collection
        return scans.database.get_collection(scans.name + ENDPOINTS_SUFFIX)

    # -- endpoints ----------------------------------------------------------------------------------

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        with wrap_errors():
            try:
                await self.endpoints.insert_one(endpoint_document(endpoint))
            except DuplicateKeyError:
                raise ValidationError(f"a webhook endpoint with id {endpoint.endpoint_id!r} exists already") from None

    async def get_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> WebhookEndpoint:
        with wrap_errors():
            doc = await self.endpoints.find_one(_of_tenant(endpoint_id, tenant))
        if doc is None:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_document(doc)

    async def list_endpoints(self, *, tenant: str | None = None) -> list[WebhookEndpoint]:
        query: Document = {} if tenant is None else {"tenant": tenant}
        with wrap_errors():
            docs = await self.endpoints.find(query).sort(ENDPOINT_ORDER).to_list()
        return [endpoint_from_document(doc) for doc in docs]

    async def delete_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> None:
        """The endpoint, then its deliveries (one a dispatch upserts meanwhile is dropped by the next claim)."""
        with wrap_errors():
            deleted = await self.endpoints.delete_one(_of_tenant(endpoint_id, tenant))
            if deleted.deleted_count == 0:
                raise EndpointNotFound(endpoint_id)
            await self.deliveries.delete_many({"endpoint_id": endpoint_id})

    async def rotate_endpoint_secret(
        self, *, endpoint_id: str, secret: str, previous_until: datetime, tenant: str | None = None
    ) -> WebhookEndpoint:
        """One pipeline update: the stored secret becomes the previous one in the same atomic step."""
        rotation = {
            "previous_secret": "$secret",
            "secret": {"$literal": secret},
            "previous_secret_until": to_bson_time(previous_until),
            "updated_at": self._now(),
        }
        with wrap_errors():
            doc = await self.endpoints.find_one_and_update(
                _of_tenant(endpoint_id, tenant), [{"$set": rotation}], return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_document(doc)

    # -- dispatch -----------------------------------------------------------------------------------

    async def dispatch_events(self, *, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """The role check, the next events after the cursor, the endpoints of their tenants (one query each),
        the callback_url of their scans only where a tenant has a callback endpoint (one query), one
        unordered insert of the deliveries (none without endpoints), and the cursor's ``$max``."""
        if not await self._holds_role(WEBHOOK_ROLE, owner):
            return 0
        await self._flush_events()
        cursor = await self._mark(DISPATCH_MARK) or 0
        now = self._now()
        with wrap_errors():
            found = self.events.find({"_id": {"$gt": cursor}}).sort("_id", ASCENDING)
            docs = await found.limit(max(1, min(limit, MAX_PAGE_SIZE))).to_list()
            if not docs:
                return 0
            events = [(int(doc["_id"]), eventlog.event_from_document(doc)) for doc in docs]
            tenants = sorted({event.tenant for _, event in events})
            found_endpoints = self.endpoints.find({"tenant": {"$in": tenants}})
            endpoints = [endpoint_from_document(doc) async for doc in found_endpoints]
            called_back = {endpoint.tenant for endpoint in endpoints if endpoint.url is None}
            wanted = sorted({event.scan_id for _, event in events if event.tenant in called_back})
            callback_urls: dict[str, str] = {}
            if wanted:
                found_scans = self.collection.find({"_id": {"$in": wanted}}, projection={"callback_url": True})
                async for doc in found_scans:
                    if isinstance(doc.get("callback_url"), str):
                        callback_urls[str(doc["_id"])] = doc["callback_url"]
            owed = owed_deliveries(events, endpoints, callback_urls, now)
            if owed:
                await _insert_new(self.deliveries, owed)
            await self.event_marks.update_one({"_id": DISPATCH_MARK}, {"$max": {"seq": events[-1][0]}}, upsert=True)
        return len(events)

    # -- deliveries ---------------------------------------------------------------------------------

    async def claim_deliveries(self, *, worker_id: str, limit: int, lease_s: float) -> list[DeliveryJob]:
        """One atomic ``find_one_and_update`` per delivery on the ``due_pending`` index, then their endpoints.

        A delivery whose endpoint was deleted meanwhile (a dispatch that raced the delete) is deleted.
        """
        claimed: list[Document] = []
        with wrap_errors():
            for _ in range(max(0, limit)):
                now = self._now()
                doc = await self.deliveries.find_one_and_update(
                    {
                        "status": PENDING,
                        "next_attempt_at": {"$lte": now},
                        "$or": [{"lease_expires_at": None}, {"lease_expires_at": {"$lte": now}}],
                    },
                    {
                        "$set": {
                            "lease_owner": worker_id,
                            "lease_expires_at": to_bson_time(now + timedelta(seconds=lease_s)),
                        }
                    },
                    sort=CLAIM_ORDER,
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    break
                claimed.append(doc)
            if not claimed:
                return []
            wanted = sorted({doc["endpoint_id"] for doc in claimed})
            found = self.endpoints.find({"_id": {"$in": wanted}})
            endpoints = {doc["_id"]: endpoint_from_document(doc) async for doc in found}
            orphans = [doc["_id"] for doc in claimed if doc["endpoint_id"] not in endpoints]
            if orphans:
                await self.deliveries.delete_many({"_id": {"$in": orphans}})
        return [
            DeliveryJob(
                delivery=delivery_from_document(doc), endpoint=endpoints[doc["endpoint_id"]], worker_id=worker_id
            )
            for doc in claimed
            if doc["endpoint_id"] in endpoints
        ]

    async def record_deliveries(self, *, results: Sequence[DeliveryResult]) -> list[bool]:
        """One fenced ``update_one`` per report, sent concurrently: the first per (endpoint, event, worker)."""
        now = self._now()
        firsts = first_results(results, position=event_seq)

        async def record(seq: int, result: DeliveryResult) -> bool:
            fence = {"endpoint_id": result.endpoint_id, "seq": seq, "status": PENDING, "lease_owner": result.worker_id}
            done = await self.deliveries.update_one(fence, record_update(result, now))
            return done.matched_count == 1

        with wrap_errors():
            done = await asyncio.gather(*(record(key[1], results[index]) for key, index in firsts.items()))
        return answers(len(results), firsts, {key for key, ok in zip(firsts, done, strict=True) if ok})

    async def list_deliveries(
        self,
        *,
        endpoint_id: str,
        tenant: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        query: Document = {"endpoint_id": endpoint_id}
        if status is not None:
            query["status"] = status.value
        with wrap_errors():
            found = self.deliveries.find(query).sort("seq", DESCENDING).limit(max(1, min(limit, MAX_PAGE_SIZE)))
            docs = await found.to_list()
        return [delivery_from_document(doc) for doc in docs]

    async def retry_delivery(self, *, endpoint_id: str, event_id: str, tenant: str | None = None) -> Delivery:
        await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        seq = event_seq(event_id)
        doc: Document | None = None
        if seq is not None:
            again = {"status": PENDING, "next_attempt_at": self._now(), "lease_owner": None, "lease_expires_at": None}
            with wrap_errors():
                doc = await self.deliveries.find_one_and_update(
                    {"endpoint_id": endpoint_id, "seq": seq}, {"$set": again}, return_document=ReturnDocument.AFTER
                )
        if doc is None:
            raise DeliveryNotFound(endpoint_id, event_id)
        return delivery_from_document(doc)

    async def prune_deliveries(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """The role check (read first, as ``prune`` does), the oldest ended ones (``ended_by_attempt``), their delete.

        The delete repeats the filter: a delivery retried between the read and the delete stays.
        """
        if not await self._holds_role(RETENTION_ROLE, owner):
            return 0
        ended: Document = {"status": {"$in": ENDED_DELIVERIES}, "last_attempt_at": {"$lt": to_bson_time(before)}}
        with wrap_errors():
            found = self.deliveries.find(ended, projection={"_id": True}).sort("last_attempt_at", ASCENDING)
            doomed = [doc["_id"] for doc in await found.limit(max(1, min(limit, MAX_PAGE_SIZE))).to_list()]
            if not doomed:
                return 0
            deleted = await self.deliveries.delete_many({"_id": {"$in": doomed}, **ended})
        return deleted.deleted_count


def _of_tenant(endpoint_id: str, tenant: str | None) -> Document:
    return {"_id": endpoint_id} if tenant is None else {"_id": endpoint_id, "tenant": tenant}


async def _insert_new(deliveries: AsyncCollection[Document], owed: list[Document]) -> None:
    """Insert the deliveries not stored yet: a duplicate key is one stored already (a dispatch repeated), kept."""
    try:
        await deliveries.insert_many(owed, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise


__all__ = [
    "DELIVERY_INDEXES",
    "ENDPOINTS_SUFFIX",
    "ENDPOINT_INDEXES",
    "REPLACED_DELIVERY_INDEXES",
    "WebhooksMixin",
    "delivery_document",
    "delivery_from_document",
    "endpoint_document",
    "endpoint_from_document",
    "is_due_to",
    "record_update",
]
