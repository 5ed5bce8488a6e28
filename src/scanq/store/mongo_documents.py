"""How a scan is stored in MongoDB: documents, indexes, filters and updates (no I/O here).

Field names are the scan record's (DESIGN.md); ``_id`` is the scan id. Datetimes
are BSON dates, which hold milliseconds: every time is truncated before it is
written, so what a store answers after a write equals what it reads back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from scanq.exceptions import StoreError
from scanq.models import Attempt, Lease, NewScan, Outcome, Scan, ScanStatus

Document = dict[str, Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Defaults for the fields a document of the original system lacks (NewScan's defaults).
LEGACY_SCANNER = "mock"
LEGACY_MAX_ATTEMPTS = 3
LEGACY_OWNER = "legacy"
LEGACY_LEASE_S = 300.0

# ESR order (equality, sort, range): status, then the claim sort (priority desc, _id asc), then the
# available_at range, so the claim walks the index in claim order and stops at the first match.
CLAIM_INDEX = IndexModel(
    [("status", ASCENDING), ("priority", DESCENDING), ("_id", ASCENDING), ("available_at", ASCENDING)], name="claim"
)
LIST_INDEX = IndexModel([("status", ASCENDING), ("_id", DESCENDING)], name="list_by_status")
OLDEST_INDEX = IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="oldest_by_status")
IDEMPOTENCY_INDEX = IndexModel(
    [("idempotency_key", ASCENDING)],
    name="idempotency_key",
    unique=True,
    partialFilterExpression={"idempotency_key": {"$type": "string"}},
)
INDEXES = [CLAIM_INDEX, LIST_INDEX, OLDEST_INDEX, IDEMPOTENCY_INDEX]
CLAIM_SORT = [("priority", DESCENDING), ("_id", ASCENDING)]

# Change events that may mean new claimable work.
WATCH_PIPELINE: list[Document] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace"]}},
                {"operationType": "update", "updateDescription.updatedFields.status": ScanStatus.ACCEPTED.value},
                {"operationType": "update", "updateDescription.updatedFields.available_at": {"$exists": True}},
            ]
        }
    }
]


def to_bson_time(moment: datetime) -> datetime:
    """Truncate to what a BSON date holds, so a written time reads back equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def is_key_conflict(error: Mapping[str, Any]) -> bool:
    """True when a duplicate-key error is about the idempotency key (not ``_id``)."""
    key_value = error.get("keyValue") or error.get("keyPattern")
    if isinstance(key_value, Mapping):
        return "idempotency_key" in key_value
    return "idempotency_key" in str(error.get("errmsg", ""))


def held_filter(lease: Lease) -> Document:
    """The fencing filter: the scan is Running under this owner and attempt."""
    return {
        "_id": lease.scan_id,
        "status": ScanStatus.RUNNING.value,
        "lease_owner": lease.worker_id,
        "attempt": lease.attempt,
    }


def holds(doc: Mapping[str, Any], lease: Lease) -> bool:
    return (
        doc.get("status") == ScanStatus.RUNNING.value
        and doc.get("lease_owner") == lease.worker_id
        and doc.get("attempt") == lease.attempt
    )


def claim_update(*, worker_id: str, now: datetime, lease_s: float) -> list[Document]:
    """A pipeline update, so the new history entry can carry the incremented attempt number."""
    attempt = {"$add": [{"$ifNull": ["$attempt", 0]}, 1]}
    entry = {
        "attempt": attempt,
        "worker": {"$literal": worker_id},
        "started_at": now,
        "finished_at": None,
        "outcome": None,
        "error": None,
    }
    return [
        {
            "$set": {
                "status": ScanStatus.RUNNING.value,
                "attempt": attempt,
                "lease_owner": {"$literal": worker_id},
                "lease_expires_at": to_bson_time(now + timedelta(seconds=lease_s)),
                "started_at": now,
                "updated_at": now,
                "history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [entry]]},
            }
        }
    ]


def new_document(new: NewScan, now: datetime) -> Document:
    created_at = to_bson_time(new.created_at)
    doc: Document = {
        "_id": new.scan_id,
        "status": ScanStatus.ACCEPTED.value,
        "target": new.target,
        "scanner": new.scanner,
        "options": dict(new.options),
        "priority": new.priority,
        "attempt": 0,
        "max_attempts": new.max_attempts,
        "created_at": created_at,
        "updated_at": now,
        "available_at": to_bson_time(new.available_at) if new.available_at is not None else created_at,
        "started_at": None,
        "finished_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "error": None,
        "result": None,
        "cancel_requested": False,
        "history": [],
    }
    if new.idempotency_key is not None:
        # Absent rather than null: the unique index is partial on string keys.
        doc["idempotency_key"] = new.idempotency_key
    return doc


def scan_from_document(doc: Mapping[str, Any]) -> Scan:
    """Build a Scan; fields a document of the original system lacks get the adoption defaults."""
    try:
        status = ScanStatus(str(doc.get("status")))
    except ValueError:
        raise StoreError(f"scan {doc.get('_id')} has an unknown status {doc.get('status')!r}") from None
    created_at = as_utc(doc.get("created_at")) or as_utc(doc.get("updated_at")) or EPOCH
    return Scan(
        scan_id=str(doc["_id"]),
        status=status,
        target=doc.get("target"),
        scanner=doc.get("scanner") or LEGACY_SCANNER,
        options=doc.get("options") or {},
        priority=doc.get("priority") or 0,
        attempt=doc.get("attempt") or 0,
        max_attempts=doc.get("max_attempts") or LEGACY_MAX_ATTEMPTS,
        created_at=created_at,
        updated_at=as_utc(doc.get("updated_at")) or created_at,
        available_at=as_utc(doc.get("available_at")) or created_at,
        started_at=as_utc(doc.get("started_at")),
        finished_at=as_utc(doc.get("finished_at")),
        lease_owner=doc.get("lease_owner"),
        lease_expires_at=as_utc(doc.get("lease_expires_at")),
        error=doc.get("error"),
        result=doc.get("result"),
        idempotency_key=doc.get("idempotency_key"),
        cancel_requested=bool(doc.get("cancel_requested")),
        history=tuple(_attempt_from_entry(entry) for entry in doc.get("history") or ()),
    )


def _attempt_from_entry(entry: Mapping[str, Any]) -> Attempt:
    outcome = entry.get("outcome")
    return Attempt(
        attempt=entry.get("attempt") or 0,
        worker=entry.get("worker") or "",
        started_at=as_utc(entry.get("started_at")) or EPOCH,
        finished_at=as_utc(entry.get("finished_at")),
        outcome=Outcome(outcome) if outcome is not None else None,
        error=entry.get("error"),
    )


def close_attempt_update(
    changes: Document, *, attempt: int, outcome: Outcome, at: datetime, error: str | None, inc_attempt: int = 0
) -> tuple[Document, list[Document]]:
    """The update (and its array filter) that applies ``changes`` and closes the open history entry of ``attempt``."""
    # ``outcome`` goes last: SecantusDB re-checks the array filter after each path it sets
    # (mongod checks it once, against the document before the update).
    entry = {
        "history.$[open].finished_at": at,
        "history.$[open].error": error,
        "history.$[open].outcome": outcome.value,
    }
    update: Document = {"$set": {**changes, **entry}}
    if inc_attempt:
        update["$inc"] = {"attempt": inc_attempt}
    return update, [{"open.attempt": attempt, "open.outcome": None}]


def legacy_adoption(now: datetime) -> tuple[Document, list[Document]]:
    """Filter and pipeline update that fill in scanq's fields on documents written without them.

    ``priority: null`` also matches a missing field; with the status equality it is a
    tight range of the claim index, so the check costs almost nothing when there is
    nothing to adopt. ``created_at``/``available_at`` become ``now``: the original
    documents carry no time (their ids are random UUIDs). A ``Running`` one gets a
    lease owned by ``legacy`` that expires ``LEGACY_LEASE_S`` later.
    """
    is_running = {"$eq": ["$status", ScanStatus.RUNNING.value]}
    defaults: Document = {
        "scanner": LEGACY_SCANNER,
        "options": {"$literal": {}},
        "priority": 0,
        "attempt": {"$cond": [is_running, 1, 0]},
        "max_attempts": LEGACY_MAX_ATTEMPTS,
        "created_at": now,
        "updated_at": now,
        "available_at": now,
        "cancel_requested": False,
        "history": {"$literal": []},
        "lease_owner": {"$cond": [is_running, LEGACY_OWNER, None]},
        "lease_expires_at": {"$cond": [is_running, to_bson_time(now + timedelta(seconds=LEGACY_LEASE_S)), None]},
    }
    fill = {field: {"$ifNull": [f"${field}", value]} for field, value in defaults.items()}
    return {"status": {"$in": [status.value for status in ScanStatus]}, "priority": None}, [{"$set": fill}]


__all__ = [
    "CLAIM_SORT",
    "EPOCH",
    "INDEXES",
    "LEGACY_MAX_ATTEMPTS",
    "LEGACY_OWNER",
    "WATCH_PIPELINE",
    "Document",
    "as_utc",
    "claim_update",
    "close_attempt_update",
    "held_filter",
    "holds",
    "is_key_conflict",
    "legacy_adoption",
    "new_document",
    "scan_from_document",
    "to_bson_time",
]
