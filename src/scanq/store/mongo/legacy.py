"""Adopting the original system's documents (``{_id, status}`` only) as scans.

On open and on every reaper pass one ``update_many`` fills in the missing
fields (priority 0, attempt 0, scanner ``mock``, tenant ``default``, ``created_at``
/ ``available_at`` / ``fair_key`` = the time scanq first saw the document). Until then reads fill in the same
defaults (``rows.scan_from_document``), except that an unknown ``created_at``
reads as ``updated_at`` or else the Unix epoch. A legacy ``Running`` document
gets a lease owned by ``legacy`` that expires five minutes after adoption, so
the reaper requeues it unless the original processor finishes it first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection

from scanq.models import DEFAULT_TENANT, ScanStatus
from scanq.store.mongo.rows import LEGACY_MAX_ATTEMPTS, LEGACY_SCANNER, Document, to_bson_time

LEGACY_OWNER = "legacy"
LEGACY_LEASE_S = 300.0


def legacy_adoption(now: datetime) -> tuple[Document, list[Document]]:
    """Filter and pipeline update that fill in scanq's fields on documents written without them.

    ``priority: null`` also matches a missing field; with the status equality it is a
    tight range of the claim index, so the check costs almost nothing when there is
    nothing to adopt. ``created_at``/``available_at`` become ``now``: the original
    documents carry no time (their ids are random UUIDs).
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
        "tenant": DEFAULT_TENANT,
        "fair_key": now.timestamp(),  # its created_at (Store rule 9)
        "lease_owner": {"$cond": [is_running, LEGACY_OWNER, None]},
        "lease_expires_at": {"$cond": [is_running, to_bson_time(now + timedelta(seconds=LEGACY_LEASE_S)), None]},
    }
    fill = {field: {"$ifNull": [f"${field}", value]} for field, value in defaults.items()}
    return {"status": {"$in": [status.value for status in ScanStatus]}, "priority": None}, [{"$set": fill}]


async def adopt_legacy(collection: AsyncCollection[Document], *, now: datetime) -> int:
    """Adopt every document of the original system in ``collection``; return how many."""
    query, update = legacy_adoption(now)
    result = await collection.update_many(query, update)
    return result.modified_count


__all__ = ["LEGACY_LEASE_S", "LEGACY_OWNER", "adopt_legacy", "legacy_adoption"]
