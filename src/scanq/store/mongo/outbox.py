"""MongoDB: a store's numbering of the events in outboxes (``eventlog``), and the cleanup behind it.

``Outbox.flush`` numbers the events waiting in the scans' outboxes: rounds of up to
``FLUSH_BATCH`` scans in ``event_outbox`` order (``outbox_since``, ``_id``), each round
continuing after the last scan of the one before, each one ordered ``insert_many`` into
the log (``eventlog.number``). Pulling the numbered events out of their outboxes is one
update per scan, the bulk of the work on a slow server, and nothing a reader waits for:
a background task does it (``CLEAN_BATCH`` scans per bulk write), and until it has, a flush
of this store leaves those events out (it knows their keys). Another process's flush does
not know them: it tries to number them again, is refused by the unique ``event_key`` and
leaves them out, and pulls them too. A cleanup lost with its process is redone that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from scanq.store.mongo.eventlog import OUTBOX_ORDER, OUTBOX_PENDING, number, pending_events, pull_update
from scanq.store.mongo.rows import Document

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

logger = logging.getLogger(__name__)

FLUSH_BATCH = 1000  # scans per round of a flush
FLUSH_ROUNDS = 20  # a flush stops after this many full rounds (the next one goes on)
CLEAN_BATCH = 100  # scans per bulk write of the cleanup
OUTBOX_PROJECTION = {"outbox": True, "outbox_since": True, "tenant": True}


class Outbox:
    """Numbers a store's view of the outboxes, one flush at a time, and pulls what it numbered in the background."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._numbered: dict[Any, set[ObjectId]] = {}  # scan id → keys numbered, still in its outbox
        self._pulling: dict[Any, set[ObjectId]] = {}  # the part of it a cleanup bulk is pulling now
        self._cleaner: asyncio.Task[None] | None = None

    def _known(self) -> set[ObjectId]:
        return {key for keys in (*self._numbered.values(), *self._pulling.values()) for key in keys}

    async def flush(
        self, scans: AsyncCollection[Document], events: AsyncCollection[Document], marks: AsyncCollection[Document]
    ) -> int:
        """Number every event waiting in an outbox (up to ``FLUSH_ROUNDS`` rounds); how many this call numbered.

        With nothing waiting it costs one probe of the ``event_outbox`` index.
        """
        numbered = 0
        async with self._lock:
            after: Document | None = None
            for _ in range(FLUSH_ROUNDS):
                query: Document = dict(OUTBOX_PENDING)
                if after is not None:
                    since, scan_id = after["outbox_since"], after["_id"]
                    query["$or"] = [{"outbox_since": {"$gt": since}}, {"outbox_since": since, "_id": {"$gt": scan_id}}]
                found = scans.find(query, projection=OUTBOX_PROJECTION, sort=OUTBOX_ORDER)
                docs = await found.limit(FLUSH_BATCH).to_list()
                if not docs:
                    break
                pending = pending_events(docs, known=self._known())
                await number(events, marks, pending)
                for event in pending:
                    self._numbered.setdefault(event.row["scan_id"], set()).add(event.key)
                numbered += len(pending)
                after = docs[-1]
                if len(docs) < FLUSH_BATCH:
                    break
        if self._numbered and (self._cleaner is None or self._cleaner.done()):
            self._cleaner = asyncio.create_task(self._clean(scans), name="scanq-mongo-outbox")
        return numbered

    async def _clean(self, scans: AsyncCollection[Document]) -> None:
        """Pull the numbered events from their outboxes, ``CLEAN_BATCH`` scans per unordered bulk write."""
        while self._numbered:
            for scan_id in list(self._numbered)[:CLEAN_BATCH]:
                self._pulling[scan_id] = self._numbered.pop(scan_id)
            pulls = [
                UpdateOne({"_id": scan_id, **OUTBOX_PENDING}, pull_update(sorted(keys)))
                for scan_id, keys in self._pulling.items()
            ]
            try:
                await scans.bulk_write(pulls, ordered=False)
            except PyMongoError as exc:
                # Left in their outboxes: the next flush finds them numbered already and hands them back.
                logger.warning("could not pull %d scans' numbered events from their outboxes: %s", len(pulls), exc)
            finally:
                self._pulling.clear()

    async def aclose(self) -> None:
        """Stop the cleanup (what it leaves is pulled after the next flush anywhere)."""
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._cleaner
            self._cleaner = None
        self._numbered.clear()


__all__ = ["CLEAN_BATCH", "FLUSH_BATCH", "FLUSH_ROUNDS", "Outbox"]
