"""What the MongoDB store sends: indexes, filters and update documents (no I/O here).

The transitions of ``finish``, ``release`` and ``requeue_expired`` are the
lifecycle's (``scanq.lifecycle``): ``transition_update`` turns one
``Transition`` into an update, ``rule_filters`` turns a rules table into one
filter per rule, so no rule is restated here. Every update that changes a
scan's status also appends its event to the scan's outbox (``eventlog``, rule 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from scanq import lifecycle
from scanq.lifecycle import AvailableChange, CancelAction, Condition, ErrorChange, Rule, Transition
from scanq.models import DEFAULT_TENANT, Actor, Lease, ScanStatus
from scanq.store.mongo.eventlog import push_fields, push_update
from scanq.store.mongo.rows import LEGACY_MAX_ATTEMPTS, Document, actor_document, to_bson_time

# ESR order (equality, sort, range): status, then the claim sort (priority desc, fair_key asc, _id asc;
# Store rule 9), then the available_at range, so the claim walks the index in claim order and stops at
# the first match. It replaced ``claim`` (the same without fair_key), which ``schema.prepare`` drops.
CLAIM_SORT = [("priority", DESCENDING), ("fair_key", ASCENDING), ("_id", ASCENDING)]
CLAIM_INDEX = IndexModel([("status", ASCENDING), *CLAIM_SORT, ("available_at", ASCENDING)], name="fair_claim")
LIST_INDEX = IndexModel([("status", ASCENDING), ("_id", DESCENDING)], name="list_by_status")
OLDEST_INDEX = IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="oldest_by_status")
# An idempotency key is unique within its tenant (Store rule 7). It replaced the index
# ``idempotency_key`` (the key alone), which ``schema.prepare`` drops.
IDEMPOTENCY_INDEX = IndexModel(
    [("tenant", ASCENDING), ("idempotency_key", ASCENDING)],
    name="tenant_idempotency_key",
    unique=True,
    partialFilterExpression={"idempotency_key": {"$type": "string"}},
)
REPLACED_INDEXES = ("idempotency_key", "claim")
# One tenant's scans: counts by (tenant, status) count its keys as ``list_by_status`` serves ``stats()``,
# and it lists a tenant's scans newest first (with a status, or across all of them: ``tenant_query``).
TENANT_INDEX = IndexModel([("tenant", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)], name="tenant_status")
# A tenant's oldest Accepted scan is its first key. Partial: only Accepted scans are in it, so
# it changes only when a scan enters or leaves Accepted.
TENANT_OLDEST_INDEX = IndexModel(
    [("tenant", ASCENDING), ("created_at", ASCENDING)],
    name="tenant_oldest_accepted",
    partialFilterExpression={"status": ScanStatus.ACCEPTED.value},
)
# Finished scans (finished.py): counts per step, and retention's batches in (finished_at, _id) order.
FINISHED_INDEX = IndexModel([("status", ASCENDING), ("finished_at", ASCENDING), ("_id", ASCENDING)], name="finished")
INDEXES = [CLAIM_INDEX, LIST_INDEX, OLDEST_INDEX, IDEMPOTENCY_INDEX, TENANT_INDEX, TENANT_OLDEST_INDEX, FINISHED_INDEX]

HEARTBEAT_PROJECTION = {"status": True, "lease_owner": True, "attempt": True, "cancel_requested": True}
# What ``lifecycle.choose`` reads of an expired scan (and the lease that fences its update).
EXPIRED_PROJECTION = {**HEARTBEAT_PROJECTION, "max_attempts": True}
# What a scan leaving Running must tell: the slot it gives back (``slots``).
SLOT_PROJECTION = {"target_key": True, "slot_token": True}

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
# Change events that may mean a new scan event: a new scan, or any change of a scan's status.
EVENT_WATCH_PIPELINE: list[Document] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace"]}},
                {"operationType": "update", "updateDescription.updatedFields.status": {"$exists": True}},
            ]
        }
    }
]


def claimable_filter(now: datetime) -> Document:
    """Accepted scans that are due."""
    return {"status": ScanStatus.ACCEPTED.value, "available_at": {"$lte": now}}


def tenant_match(tenant: str) -> Document:
    """``tenant``'s scans; a document without ``tenant`` (not adopted yet, see ``schema``) is the default's.

    Not for counts: ``stats`` matches the tenant exactly, so the count stays a count of index keys.
    """
    return {"tenant": {"$in": [tenant, None]} if tenant == DEFAULT_TENANT else tenant}


def tenant_query(tenant: str, status: ScanStatus | None = None) -> Document:
    """One tenant's scans (of ``status``), as ranges of the ``tenant_status`` index.

    Without a status every status is named: the index then gives each status's keys in ``_id``
    order and the server merges them, so a tenant's newest scans come without a sort.
    """
    statuses: Any = status.value if status is not None else {"$in": [s.value for s in ScanStatus]}
    return {**tenant_match(tenant), "status": statuses}


def scan_of_tenant(scan_id: str, tenant: str | None) -> Document:
    """One scan by id, if it belongs to ``tenant`` (None: any)."""
    return {"_id": scan_id} if tenant is None else {"_id": scan_id, **tenant_match(tenant)}


def expired_filter(now: datetime) -> Document:
    """Running scans whose lease has expired."""
    return {"status": ScanStatus.RUNNING.value, "lease_expires_at": {"$lte": now}}


def held_filter(lease: Lease) -> Document:
    """The fencing filter: the scan is Running under this owner and attempt."""
    return {
        "_id": lease.scan_id,
        "status": ScanStatus.RUNNING.value,
        "lease_owner": lease.worker_id,
        "attempt": lease.attempt,
    }


def holds(doc: Mapping[str, Any], lease: Lease) -> bool:
    """Whether ``doc`` matches ``held_filter(lease)``."""
    return (
        doc.get("status") == ScanStatus.RUNNING.value
        and doc.get("lease_owner") == lease.worker_id
        and doc.get("attempt") == lease.attempt
    )


def claim_update(*, worker_id: str, now: datetime, lease_s: float, slot_token: str) -> list[Document]:
    """A pipeline update, so the new history entry (and the Running event) can carry the incremented attempt.

    ``slot_token`` names this claim, so the scan gives back the right slot when it leaves Running (``slots``).
    One update per scan: each carries its own event key.
    """
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
                "slot_token": {"$literal": slot_token},
                **push_fields(ScanStatus.RUNNING, attempt=attempt, at=now),
            }
        }
    ]


def heartbeat_filter(leases: Sequence[Lease]) -> Document:
    """The scans of ``leases`` that are still held."""
    return {"_id": {"$in": [lease.scan_id for lease in leases]}, "$or": [held_filter(lease) for lease in leases]}


def extend_lease_update(*, now: datetime, lease_s: float) -> Document:
    """A heartbeat: the lease runs ``lease_s`` from ``now``."""
    return {"$set": {"lease_expires_at": to_bson_time(now + timedelta(seconds=lease_s)), "updated_at": now}}


def transition_update(
    transition: Transition,
    *,
    attempt: int,
    now: datetime,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    retry_at: datetime | None = None,
) -> tuple[Document, list[Document]]:
    """The update (and its array filter) that carries ``transition`` out on a scan held at ``attempt``.

    The lease is cleared, the open history entry of ``attempt`` closed and the event appended.

    Args:
        error: the error the worker reported with its outcome.
        result: the worker's result.
        retry_at: when a retried scan becomes claimable again.
    """
    changes: Document = {
        "status": transition.status.value,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
        "result": dict(result or {}) if transition.keeps_result else None,
    }
    if transition.error is not ErrorChange.KEEP:
        changes["error"] = lifecycle.error_value(transition.error, error)
    if transition.is_finished:
        changes["finished_at"] = now
    if transition.available is AvailableChange.NOW:
        changes["available_at"] = now
    elif transition.available is AvailableChange.RETRY_AT:
        changes["available_at"] = now if retry_at is None else max(to_bson_time(retry_at), now)
    # ``outcome`` goes last: SecantusDB re-checks the array filter after each path it sets
    # (mongod checks it once, against the document before the update).
    changes |= {
        "history.$[open].finished_at": now,
        "history.$[open].error": lifecycle.history_error(transition.history_error, error),
        "history.$[open].outcome": transition.outcome.value,
    }
    update: Document = {"$set": changes}
    if transition.attempt_delta:
        update["$inc"] = {"attempt": transition.attempt_delta}
    update |= push_update(transition.status, attempt=attempt + transition.attempt_delta, at=now)
    return update, [{"open.attempt": attempt, "open.outcome": None}]


def condition_filter(condition: Condition, *, is_met: bool = True) -> Document:
    """The documents where ``condition`` is met (or, with ``is_met=False``, is not)."""
    if condition is Condition.CANCEL_REQUESTED:
        return {"cancel_requested": True} if is_met else {"cancel_requested": {"$ne": True}}
    if condition is Condition.ATTEMPTS_LEFT:
        compare = "$lt" if is_met else "$gte"
        attempts = [{"$ifNull": ["$attempt", 0]}, {"$ifNull": ["$max_attempts", LEGACY_MAX_ATTEMPTS]}]
        return {"$expr": {compare: attempts}}
    if is_met:
        return {}
    raise ValueError("no document fails Condition.ALWAYS")


def rule_filters(rules: Sequence[Rule]) -> list[tuple[Transition, Document]]:
    """Each rule's transition with the filter of the documents it applies to: its condition met, no earlier one's."""
    filters: list[tuple[Transition, Document]] = []
    for index, rule in enumerate(rules):
        parts = [condition_filter(earlier.when, is_met=False) for earlier in rules[:index]]
        parts = [part for part in (*parts, condition_filter(rule.when)) if part]
        filters.append((rule.then, {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})))
        if rule.when is Condition.ALWAYS:
            break
    return filters


def cancel_update(action: CancelAction, *, now: datetime, by: Actor | None = None) -> Document | list[Document]:
    """What ``action`` sets on a scan (``lifecycle.CANCEL`` says which action a status gets), ``by`` whom.

    Cancelling now is a pipeline update, so its event carries the scan's attempt; a request changes no status.
    """
    cancelled_by = actor_document(by)
    if action is CancelAction.CANCEL_NOW:
        changes = {"status": ScanStatus.CANCELLED.value, "finished_at": now, "updated_at": now}
        attempt = {"$ifNull": ["$attempt", 0]}
        events = push_fields(ScanStatus.CANCELLED, attempt=attempt, at=now)
        return [{"$set": {**changes, "cancelled_by": {"$literal": cancelled_by}, **events}}]
    if action is CancelAction.REQUEST:
        return {"$set": {"cancel_requested": True, "updated_at": now, "cancelled_by": cancelled_by}}
    raise ValueError(f"cancel action {action} changes nothing")


__all__ = [
    "CLAIM_INDEX",
    "CLAIM_SORT",
    "EVENT_WATCH_PIPELINE",
    "EXPIRED_PROJECTION",
    "FINISHED_INDEX",
    "HEARTBEAT_PROJECTION",
    "IDEMPOTENCY_INDEX",
    "INDEXES",
    "REPLACED_INDEXES",
    "SLOT_PROJECTION",
    "TENANT_INDEX",
    "TENANT_OLDEST_INDEX",
    "WATCH_PIPELINE",
    "cancel_update",
    "claim_update",
    "claimable_filter",
    "condition_filter",
    "expired_filter",
    "extend_lease_update",
    "heartbeat_filter",
    "held_filter",
    "holds",
    "rule_filters",
    "scan_of_tenant",
    "tenant_match",
    "tenant_query",
    "transition_update",
]
