"""MongoDB: the scan event log (``Store`` rule 10), written in each scan's own update, then numbered.

A standalone server has no multi-document transactions, so an event cannot go into a log
collection in the same transaction as its transition; and a number taken from a counter
before the transition leaves a gap whenever the transition is refused or its writer dies,
which a reader cannot tell from a write still on its way. So an event is written in two steps:

1. **The outbox.** A transition appends its event ``{k, s, a, at}`` (key, status, attempt,
   time) to the scan document's ``outbox`` array in the same single-document update that makes
   the transition (for a new scan, in the inserted document), and sets ``outbox_since`` unless
   set. A refused update writes neither; an applied one writes both: the event is as durable as
   its transition, never lost, never invented. ``k`` is an ObjectId the writer makes, unique across
   every process. This costs the hot path no round trip.
2. **Numbering** (``flush``). Events are moved from the outboxes to ``<collection>_events``, one
   document per event whose ``_id`` is its number (the event id is its decimal form). A flush
   reads the highest ``_id`` and inserts the events it found with the next numbers, in order, in
   one ordered ``insert_many``. The ``_id`` index is unique, so two flushers (any process may
   flush) never take the same number: the later one's insert stops at the first number taken,
   and it reads the end of the log again and goes on. The unique index on ``k`` keeps an event
   from being logged twice. Then the logged events are pulled from their outboxes, behind the
   readers' backs (``outbox.Outbox``: ``outbox_since`` goes with the last event).

The log has no gaps: a number is taken only by an insert that succeeded right after the number
before it. Every event numbered below one a reader sees is therefore already visible, so whatever
``read_events`` finds after ``after`` is settled, in its final order, and a reader that continues
after the last event it read never misses one, with no wait for gaps and no bound on how slow a
writer may be. An event still in an outbox has no number yet: it gets one after every number
already given.

A flush (``outbox.Outbox.flush``) orders the events it moves by their time, then by key (an
ObjectId grows with every one a process makes), keeping each scan's own events in their order:
within one process the log is the order of the transitions. Events of scans a flush did not
reach get later numbers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError

from scanq.exceptions import StoreError, ValidationError
from scanq.models import ScanEvent, ScanStatus
from scanq.store.mongo.errors import DUPLICATE_KEY
from scanq.store.mongo.rows import EPOCH, Document, as_utc, outbox_entry, tenant_of

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

logger = logging.getLogger(__name__)

EVENTS_SUFFIX = "_events"
MARKS_SUFFIX = "_event_marks"
# ``<collection>_event_marks``: the dispatch cursor, and the highest number pruned (so numbers are never reused).
DISPATCH_MARK = "dispatch_cursor"
PRUNED_MARK = "pruned_through"

OUTBOX_PENDING: Document = {"outbox_since": {"$exists": True}}
# The scans whose outbox holds events not logged yet: only they are in it, oldest outbox first.
OUTBOX_ORDER = [("outbox_since", ASCENDING), ("_id", ASCENDING)]
OUTBOX_INDEX = IndexModel(
    OUTBOX_ORDER, name="event_outbox", partialFilterExpression={"outbox_since": {"$exists": True}}
)
EVENT_INDEXES = [
    IndexModel([("k", ASCENDING)], name="event_key", unique=True),
    IndexModel([("scan_id", ASCENDING), ("_id", ASCENDING)], name="scan_events"),
    IndexModel([("tenant", ASCENDING), ("_id", ASCENDING)], name="tenant_events"),
]
FLUSH_RETRIES = 100  # inserts that lost numbers to other flushers, per round, before giving up
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def parse_event_id(event_id: str) -> int:
    """The number an event id of this store names; ``ValidationError`` for anything else."""
    if _EVENT_ID.fullmatch(event_id) is None:
        raise ValidationError(f"invalid event id {event_id!r}")
    return int(event_id)


def event_from_document(doc: Mapping[str, Any]) -> ScanEvent:
    """A logged event (a document of ``<collection>_events``)."""
    return ScanEvent(
        event_id=str(doc["_id"]),
        scan_id=str(doc["scan_id"]),
        tenant=str(doc["tenant"]),
        status=ScanStatus(doc["status"]),
        attempt=int(doc.get("attempt") or 0),
        at=as_utc(doc.get("at")) or EPOCH,
    )


# -- writing into the outbox (no I/O) -------------------------------------------------------------


def push_update(status: ScanStatus, *, attempt: int, at: datetime) -> Document:
    """The operators that append the event of a transition to ``status`` to a classic update."""
    return {"$push": {"outbox": outbox_entry(status, attempt=attempt, at=at)}, "$min": {"outbox_since": at}}


def push_fields(status: ScanStatus, *, attempt: Any, at: datetime) -> Document:
    """The fields of a pipeline ``$set`` stage that append the event (``attempt`` an expression of the input)."""
    entry = {**outbox_entry(status, attempt=attempt, at=at), "s": {"$literal": status.value}}
    return {
        "outbox": {"$concatArrays": [{"$ifNull": ["$outbox", []]}, [entry]]},
        "outbox_since": {"$ifNull": ["$outbox_since", at]},
    }


def pull_update(keys: Sequence[ObjectId]) -> list[Document]:
    """Remove the events ``keys`` from an outbox; with its last event, the outbox and ``outbox_since`` go."""
    kept = {"$filter": {"input": {"$ifNull": ["$outbox", []]}, "as": "e", "cond": {"$not": [{"$in": ["$$e.k", keys]}]}}}
    has_events = {"$gt": [{"$size": "$outbox"}, 0]}
    return [
        {"$set": {"outbox": kept}},
        {
            "$set": {
                "outbox_since": {"$cond": [has_events, "$outbox_since", "$$REMOVE"]},
                "outbox": {"$cond": [has_events, "$outbox", "$$REMOVE"]},
            }
        },
    ]


# -- numbering ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    """An event found in an outbox, with what the log needs of its scan."""

    order: tuple[Any, ...]
    key: ObjectId
    row: Document  # the log document but its number


async def last_number(events: AsyncCollection[Document], marks: AsyncCollection[Document]) -> int:
    """The highest number given: the end of the log, or when the log is empty, the highest pruned (else 0).

    Pruning deletes the oldest events only (``EventsMixin.prune_events``) and records the highest
    number it deletes before it deletes it, so it is read second: a log found empty was emptied
    after the mark was written.
    """
    newest = await events.find_one({}, projection={"_id": True}, sort=[("_id", DESCENDING)])
    if newest is not None:
        return int(newest["_id"])
    mark = await marks.find_one({"_id": PRUNED_MARK})
    return int(mark["seq"]) if mark is not None else 0


def pending_events(docs: Sequence[Document], *, known: Container[ObjectId] = ()) -> list[_Pending]:
    """The events in the outboxes of ``docs``, in the order a flush numbers them (module docstring).

    Args:
        known: keys known to be numbered already (waiting to be pulled from their outbox): left out.
    """
    pending: list[_Pending] = []
    for doc in docs:
        floor: tuple[Any, ...] = ()
        for entry in doc.get("outbox") or ():
            if not isinstance(entry, Mapping) or "k" not in entry:
                continue
            at = as_utc(entry.get("at")) or EPOCH
            # A scan's events keep their order even if their writers' clocks disagree.
            floor = max(floor, (at, entry["k"]))
            row = {
                "k": entry["k"],
                "scan_id": doc["_id"],
                "tenant": tenant_of(doc),
                "status": entry.get("s"),
                "attempt": entry.get("a") or 0,
                "at": at,
            }
            if entry["k"] not in known:
                pending.append(_Pending(order=floor, key=entry["k"], row=row))
    pending.sort(key=lambda event: event.order)  # stable: a scan's ties stay in outbox order
    return pending


async def number(
    events: AsyncCollection[Document], marks: AsyncCollection[Document], pending: Sequence[_Pending]
) -> None:
    """Log ``pending`` with the next numbers, in order; those another flusher logged meanwhile are left out."""
    left = list(pending)
    for _ in range(FLUSH_RETRIES):
        if not left:
            return
        start = await last_number(events, marks) + 1
        rows = [{"_id": start + index, **event.row} for index, event in enumerate(left)]
        try:
            await events.insert_many(rows, ordered=True)
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            left = left[int(exc.details.get("nInserted") or 0) :]
        # A number was taken by another flusher, or an event was logged by one: leave out what is logged.
        found = events.find({"k": {"$in": [event.key for event in left]}}, projection={"k": True})
        logged = {doc["k"] async for doc in found}
        left = [event for event in left if event.key not in logged]
    raise StoreError("numbering events kept racing with other processes")


__all__ = [
    "DISPATCH_MARK",
    "EVENTS_SUFFIX",
    "EVENT_INDEXES",
    "FLUSH_RETRIES",
    "MARKS_SUFFIX",
    "OUTBOX_INDEX",
    "OUTBOX_ORDER",
    "OUTBOX_PENDING",
    "PRUNED_MARK",
    "event_from_document",
    "last_number",
    "parse_event_id",
    "pending_events",
    "pull_update",
    "push_fields",
    "push_update",
]
