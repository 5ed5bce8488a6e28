"""Records to models and models to statement arguments (the ``unnest`` arrays of the batch statements)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from scanq.ids import is_scan_id
from scanq.models import Attempt, Finish, Lease, NewScan, Outcome, Scan, ScanStatus


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def attempt_from_entry(entry: dict[str, Any]) -> Attempt:
    """One entry of the ``history`` jsonb array (timestamps are ISO text there)."""
    outcome = entry.get("outcome")
    return Attempt(
        attempt=entry["attempt"],
        worker=entry["worker"],
        started_at=datetime.fromisoformat(entry["started_at"]),
        finished_at=_timestamp(entry.get("finished_at")),
        outcome=Outcome(outcome) if outcome is not None else None,
        error=entry.get("error"),
    )


def scan_from_row(row: asyncpg.Record) -> Scan:
    """A whole ``scans`` row (``SELECT *``, ``RETURNING s.*``)."""
    return Scan(
        scan_id=str(row["scan_id"]),
        status=ScanStatus(row["status"]),
        target=row["target"],
        scanner=row["scanner"],
        options=row["options"],
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        available_at=row["available_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        error=row["error"],
        result=row["result"],
        idempotency_key=row["idempotency_key"],
        cancel_requested=row["cancel_requested"],
        history=tuple(attempt_from_entry(entry) for entry in row["history"]),
    )


def new_scan_arrays(scans: Sequence[NewScan]) -> tuple[list[Any], ...]:
    """The arguments of ``insert_scans``: one array per column."""
    return (
        [scan.scan_id for scan in scans],
        [scan.target for scan in scans],
        [scan.scanner for scan in scans],
        [dict(scan.options) for scan in scans],
        [scan.priority for scan in scans],
        [scan.max_attempts for scan in scans],
        [scan.created_at for scan in scans],
        [scan.available_at for scan in scans],
        [scan.idempotency_key for scan in scans],
    )


def held_leases(leases: Sequence[Lease]) -> list[Lease]:
    """Leases worth sending, in scan_id order (one lock order for every batch, so batches cannot deadlock)."""
    unique = {lease.scan_id: lease for lease in reversed(leases) if is_scan_id(lease.scan_id)}
    return [unique[scan_id] for scan_id in sorted(unique)]


def lease_arrays(leases: Sequence[Lease]) -> tuple[list[str], list[str], list[int]]:
    """The fence of a batch statement: scan ids, lease owners, attempts."""
    return (
        [lease.scan_id for lease in leases],
        [lease.worker_id for lease in leases],
        [lease.attempt for lease in leases],
    )


def first_finishes(finishes: Sequence[Finish]) -> dict[str, Finish]:
    """The first finish of each scan, by scan id: a scan completes at most once, so a repeat never counts."""
    first: dict[str, Finish] = {}
    for fin in finishes:
        if is_scan_id(fin.lease.scan_id):
            first.setdefault(fin.lease.scan_id, fin)
    return first


def finish_arrays(ordered: Sequence[Finish]) -> tuple[list[Any], ...]:
    """The arguments of ``finish``: the fence, then outcome, result, error and retry time per scan."""
    return (
        *lease_arrays([fin.lease for fin in ordered]),
        [str(fin.outcome) for fin in ordered],
        [dict(fin.result) if fin.result is not None else None for fin in ordered],
        [fin.error for fin in ordered],
        [fin.retry_at for fin in ordered],
    )


__all__ = [
    "attempt_from_entry",
    "finish_arrays",
    "first_finishes",
    "held_leases",
    "lease_arrays",
    "new_scan_arrays",
    "scan_from_row",
]
