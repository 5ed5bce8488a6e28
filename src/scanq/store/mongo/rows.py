"""A scan as a MongoDB document and back (no I/O here).

Field names are the scan record's (DESIGN.md); ``_id`` is the scan id. Datetimes
are BSON dates, which hold milliseconds: every time is truncated before it is
written, so what a store answers after a write equals what it reads back.
A document of the original system (``{_id, status}`` only) reads with the
defaults the legacy adoption fills in (``legacy.py``); one without ``tenant``
(written before tenants, or by the original system) reads as ``DEFAULT_TENANT``.
``submitted_by`` / ``cancelled_by`` are ``{token_id, token_name}`` or null.
``fair_key`` (epoch seconds, a double) orders the claim within a priority (``Store`` rule 9,
``fairness``); ``target_key`` is the host the politeness cap counts, null when never capped;
``slot_token`` names the claim that took the scan's slot (``slots``); ``callback_url`` where the tenant's
callback endpoint sends its events (absent in older documents: None). ``outbox`` holds the scan's
events not numbered yet and ``outbox_since`` when the oldest of them was written (``eventlog``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from scanq.exceptions import StoreError
from scanq.models import DEFAULT_TENANT, Actor, Attempt, NewScan, Outcome, Scan, ScanStatus

Document = dict[str, Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Defaults for the fields a document of the original system lacks (NewScan's defaults).
LEGACY_SCANNER = "mock"
LEGACY_MAX_ATTEMPTS = 3


def to_bson_time(moment: datetime) -> datetime:
    """Truncate to what a BSON date holds, so a written time reads back equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(value: Any) -> datetime | None:
    """A stored BSON date as an aware UTC datetime; None for anything else."""
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def actor_document(actor: Actor | None) -> Document | None:
    """Who did something, as stored in ``submitted_by`` / ``cancelled_by``."""
    return None if actor is None else {"token_id": actor.token_id, "token_name": actor.token_name}


def actor_from_document(value: Any) -> Actor | None:
    """The ``Actor`` of a stored ``submitted_by`` / ``cancelled_by`` (None when unset)."""
    if not isinstance(value, Mapping) or value.get("token_id") is None:
        return None
    return Actor(token_id=str(value["token_id"]), token_name=value.get("token_name"))


def tenant_of(doc: Mapping[str, Any]) -> str:
    """The tenant of a stored scan: a document written without one belongs to ``DEFAULT_TENANT``."""
    return doc.get("tenant") or DEFAULT_TENANT


def outbox_entry(status: ScanStatus, *, attempt: Any, at: datetime) -> Document:
    """One event as its transition appends it to the outbox (``eventlog``): a fresh key ``k``, the status
    ``s`` it leads to, the attempt ``a`` after it (a number, or an expression in a pipeline update), its time."""
    return {"k": ObjectId(), "s": status.value, "a": attempt, "at": at}


def new_document(new: NewScan, now: datetime, *, fair_key: float) -> Document:
    """The document of a submitted scan, Accepted at ``now`` with its ``fair_key`` (``fairness.reserve``).

    Its Accepted event is in its outbox (``eventlog``): the insert writes both.
    """
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
        "tenant": new.tenant,
        "submitted_by": actor_document(new.submitted_by),
        "cancelled_by": None,
        "fair_key": fair_key,
        "target_key": new.target_key,
        "callback_url": new.callback_url,
        "outbox": [outbox_entry(ScanStatus.ACCEPTED, attempt=0, at=now)],
        "outbox_since": now,
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
        history=tuple(attempt_from_entry(entry) for entry in doc.get("history") or ()),
        tenant=tenant_of(doc),
        submitted_by=actor_from_document(doc.get("submitted_by")),
        cancelled_by=actor_from_document(doc.get("cancelled_by")),
        target_key=doc.get("target_key"),
        callback_url=doc.get("callback_url"),
    )


def attempt_from_entry(entry: Mapping[str, Any]) -> Attempt:
    """One entry of a document's ``history`` array."""
    outcome = entry.get("outcome")
    return Attempt(
        attempt=entry.get("attempt") or 0,
        worker=entry.get("worker") or "",
        started_at=as_utc(entry.get("started_at")) or EPOCH,
        finished_at=as_utc(entry.get("finished_at")),
        outcome=Outcome(outcome) if outcome is not None else None,
        error=entry.get("error"),
    )


__all__ = [
    "EPOCH",
    "LEGACY_MAX_ATTEMPTS",
    "LEGACY_SCANNER",
    "Document",
    "actor_document",
    "actor_from_document",
    "as_utc",
    "attempt_from_entry",
    "new_document",
    "outbox_entry",
    "scan_from_document",
    "tenant_of",
    "to_bson_time",
]
