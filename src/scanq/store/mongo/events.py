"""MongoDB: reading, waiting for and pruning the scan event log (``Store`` rule 10).

How an event is written and numbered is ``eventlog``'s. ``EventsMixin`` is mixed into
``MongoStore``; every read first numbers the events waiting in outboxes (``outbox.Outbox.flush``,
one index probe when none waits), so an event is readable as soon as its transition returned.
Flushes of one store run one at a time: concurrent readers would only race each other for
the same numbers.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pymongo import ASCENDING

from scanq.models import DeliveryStatus, ScanEvent, ScanStatus
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE
from scanq.store.mongo import eventlog
from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.eventlog import DISPATCH_MARK, EVENTS_SUFFIX, MARKS_SUFFIX, PRUNED_MARK
from scanq.store.mongo.rows import Document, to_bson_time

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

    from scanq.store.mongo.outbox import Outbox
    from scanq.store.mongo.wakeup import EventSignal

ENDED_DELIVERIES = [DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value]
DELIVERIES_SUFFIX = "_webhook_deliveries"


class EventsMixin:
    """The event operations of the ``Store`` contract (see ``store.base``), on MongoDB."""

    _outbox: Outbox
    _event_signal: EventSignal

    if TYPE_CHECKING:

        @property
        def collection(self) -> AsyncCollection[Document]: ...

        @property
        def leaders(self) -> AsyncCollection[Document]: ...

        def _now(self) -> datetime: ...

    def _beside(self, suffix: str) -> AsyncCollection[Document]:
        scans = self.collection
        return scans.database.get_collection(scans.name + suffix)

    @property
    def events(self) -> AsyncCollection[Document]:
        """The numbered events (``eventlog``), beside the scans."""
        return self._beside(EVENTS_SUFFIX)

    @property
    def event_marks(self) -> AsyncCollection[Document]:
        """The dispatch cursor and the highest number pruned."""
        return self._beside(MARKS_SUFFIX)

    @property
    def deliveries(self) -> AsyncCollection[Document]:
        """One document per event owed to a webhook endpoint (``webhooks``)."""
        return self._beside(DELIVERIES_SUFFIX)

    async def _flush_events(self) -> None:
        """Number every event waiting in an outbox now (``outbox.Outbox``); one flush of this store at a time."""
        with wrap_errors():
            await self._outbox.flush(self.collection, self.events, self.event_marks)

    async def _holds_role(self, role: str, owner: str) -> bool:
        """Whether ``owner`` holds ``role`` now (``lead``): read before a write, as ``prune`` does."""
        with wrap_errors():
            holder = await self.leaders.find_one({"_id": role, "owner": owner, "expires_at": {"$gt": self._now()}})
        return holder is not None

    async def _mark(self, name: str) -> int | None:
        with wrap_errors():
            doc = await self.event_marks.find_one({"_id": name})
        return None if doc is None else int(doc["seq"])

    async def read_events(
        self,
        *,
        after: str | None = None,
        tenant: str | None = None,
        scan_id: str | None = None,
        statuses: frozenset[ScanStatus] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[ScanEvent]:
        """A range of the ``_id`` index (of ``scan_events`` / ``tenant_events`` with a scan or a tenant)."""
        query: Document = {"_id": {"$gt": 0 if after is None else eventlog.parse_event_id(after)}}
        if tenant is not None:
            query["tenant"] = tenant
        if scan_id is not None:
            query["scan_id"] = scan_id
        if statuses is not None:
            query["status"] = {"$in": sorted(status.value for status in statuses)}
        await self._flush_events()
        with wrap_errors():
            found = self.events.find(query).sort("_id", ASCENDING).limit(max(1, min(limit, MAX_PAGE_SIZE)))
            docs = await found.to_list()
        return [eventlog.event_from_document(doc) for doc in docs]

    async def events_head(self) -> str:
        await self._flush_events()
        with wrap_errors():
            return str(await eventlog.last_number(self.events, self.event_marks))

    async def wait_for_events(self, *, timeout_s: float) -> None:
        await self._event_signal.wait(timeout_s=timeout_s)

    async def prune_events(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """Delete the oldest events, up to the first one at or after ``before`` or past the dispatch cursor.

        Only while ``owner`` holds ``RETENTION_ROLE`` (read first, as ``prune`` does). A bounded read
        (``limit`` events from the start of the log), then: the highest number deleted goes into the
        ``pruned_through`` mark (so no number is given twice, ``eventlog.last_number``), the events are
        deleted (a prefix of the log: every kept event is numbered after every deleted one). Deliveries
        carry their event and stay (``prune_deliveries``).
        """
        if not await self._holds_role(RETENTION_ROLE, owner):
            return 0
        cursor = await self._mark(DISPATCH_MARK)
        if cursor is None:
            return 0  # nothing dispatched yet: every event is still owed to the dispatcher
        cutoff = to_bson_time(before)
        with wrap_errors():
            found = self.events.find({"_id": {"$lte": cursor}}, projection={"at": True}).sort("_id", ASCENDING)
            docs = await found.limit(max(1, min(limit, MAX_PAGE_SIZE))).to_list()
        doomed: list[int] = []
        for doc in docs:
            at = doc.get("at")
            if not isinstance(at, datetime) or at >= cutoff:
                break
            doomed.append(int(doc["_id"]))
        with wrap_errors():
            if doomed:
                await self.event_marks.update_one({"_id": PRUNED_MARK}, {"$max": {"seq": doomed[-1]}}, upsert=True)
                await self.events.delete_many({"_id": {"$lte": doomed[-1]}})
        return len(doomed)


__all__ = ["DELIVERIES_SUFFIX", "ENDED_DELIVERIES", "EventsMixin"]
