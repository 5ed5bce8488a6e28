"""MongoDB: the operations on finished scans (throughput counts, export pages, the retention role and prune).

``FinishedScans`` is mixed into ``MongoStore``, whose ``store.py`` keeps the live
queue's operations. Counts and prune batches use the ``finished`` index
(status, finished_at, _id): counts are one aggregation over a range of it per
status, a prune batch is the start of one status's range. With a ``tenant`` the
same ranges are read, and each scan in them is checked for its tenant: the cost
stays bounded by the window or the batch.

The retention role is a document per role in ``<collection>_leaders``: its owner
and the end of its term. A prune reads it and then deletes (two operations, where
the SQL stores check it inside the delete): the retention loop renews the term
before every batch, and a term lasts far longer than one batch. Not a TTL index:
counts would stay exact (``stats`` counts documents), but a TTL monitor deletes
without writing the archive first, on its own schedule and in unbounded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from scanq.models import Scan, ScanStatus
from scanq.store.base import (
    FINISHED_STATUSES,
    MAX_PAGE_SIZE,
    RETENTION_ROLE,
    check_after,
    check_finished_status,
    count_steps,
    finished_buckets,
)
from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.rows import Document, scan_from_document, to_bson_time
from scanq.store.mongo.statements import tenant_match

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

LEADERS_SUFFIX = "_leaders"
# A prune batch's order: the ``finished`` index (statements.FINISHED_INDEX) after its status.
RETENTION_SORT = [("finished_at", ASCENDING), ("_id", ASCENDING)]


def of_tenant(tenant: str | None) -> Document:
    """The filter of ``tenant``'s scans (None: every tenant's)."""
    return {} if tenant is None else tenant_match(tenant)


class FinishedScans:
    """The finished-scan operations of the ``Store`` contract (see ``store.base``), on MongoDB."""

    if TYPE_CHECKING:

        @property
        def collection(self) -> AsyncCollection[Document]: ...

        def _now(self) -> datetime: ...

        async def _flush_events(self) -> None: ...

    @property
    def leaders(self) -> AsyncCollection[Document]:
        """The roles' documents, beside the scans (same database, same write concern)."""
        scans = self.collection
        return scans.database.get_collection(scans.name + LEADERS_SUFFIX)

    async def finished_counts(
        self, *, since: datetime, until: datetime, step_s: float, tenant: str | None = None
    ) -> list[tuple[datetime, dict[ScanStatus, int]]]:
        steps = count_steps(since=since, until=until, step_s=step_s)
        if steps == 0:
            return []
        start = to_bson_time(since)
        step = {"$floor": {"$divide": [{"$subtract": ["$finished_at", start]}, step_s * 1000]}}
        pipeline: list[Document] = [
            {
                "$match": {
                    "status": {"$in": [s.value for s in FINISHED_STATUSES]},
                    "finished_at": {"$gte": start, "$lt": to_bson_time(until)},
                    **of_tenant(tenant),
                }
            },
            {"$group": {"_id": {"status": "$status", "step": step}, "n": {"$sum": 1}}},
        ]
        with wrap_errors():
            groups = await (await self.collection.aggregate(pipeline)).to_list()
        counts = [(int(group["_id"]["step"]), group["_id"]["status"], int(group["n"])) for group in groups]
        return finished_buckets(since=since, step_s=step_s, steps=steps, counts=counts)

    async def export_scans(
        self,
        *,
        status: ScanStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        tenant: str | None = None,
    ) -> list[Scan]:
        query: Document = {"status": {"$in": [s.value for s in check_finished_status(status)]}, **of_tenant(tenant)}
        after = check_after(after)
        if after is not None:
            query["_id"] = {"$gt": after}
        window: Document = {}
        if since is not None:
            window["$gte"] = to_bson_time(since)
        if until is not None:
            window["$lt"] = to_bson_time(until)
        if window:
            query["finished_at"] = window
        with wrap_errors():
            found = self.collection.find(query).sort("_id", ASCENDING).limit(max(1, min(limit, MAX_PAGE_SIZE)))
            docs = await found.to_list()
        return [scan_from_document(doc) for doc in docs]

    async def lead(self, *, role: str, owner: str, term_s: float) -> bool:
        now = self._now()
        with wrap_errors():
            try:
                doc = await self.leaders.find_one_and_update(
                    {"_id": role, "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}]},
                    {"$set": {"owner": owner, "expires_at": to_bson_time(now + timedelta(seconds=term_s))}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                return False  # another owner's term runs: the filter missed, and the upsert hit its _id
        return doc is not None and doc.get("owner") == owner

    async def resign(self, *, role: str, owner: str) -> None:
        with wrap_errors():
            await self.leaders.delete_one({"_id": role, "owner": owner})

    async def prune(
        self,
        *,
        status: ScanStatus,
        finished_before: datetime,
        limit: int,
        owner: str,
        dry_run: bool = False,
        scan_ids: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> list[Scan]:
        check_finished_status(status)
        rule: Document = {
            "status": status.value,
            "finished_at": {"$lt": to_bson_time(finished_before)},
            **of_tenant(tenant),
        }
        query: Document = rule if scan_ids is None else {**rule, "_id": {"$in": list(scan_ids)}}
        with wrap_errors():
            found = self.collection.find(query).sort(RETENTION_SORT).limit(max(1, min(limit, MAX_PAGE_SIZE)))
            docs: list[Any] = await found.to_list()
            if dry_run or not docs:
                return [scan_from_document(doc) for doc in docs]
            is_leader = {"_id": RETENTION_ROLE, "owner": owner, "expires_at": {"$gt": self._now()}}
            holder = await self.leaders.find_one(is_leader)
            if holder is None:
                return []
            if any("outbox_since" in doc for doc in docs):
                # Their last events are not numbered yet: number them before they go with their scans.
                await self._flush_events()
            await self.collection.delete_many({**rule, "_id": {"$in": [doc["_id"] for doc in docs]}})
        return [scan_from_document(doc) for doc in docs]


__all__ = ["LEADERS_SUFFIX", "FinishedScans", "of_tenant"]
