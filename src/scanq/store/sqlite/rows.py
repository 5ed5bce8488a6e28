"""Rows <-> models for the SQLite store.

Timestamps are REAL epoch seconds; ``options``, ``result`` and ``history`` are
JSON text. Rows come back in the column order of ``statements.COLUMNS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from scanq.exceptions import ValidationError
from scanq.models import Attempt, Finish, Lease, NewScan, Outcome, Scan, ScanStatus


def to_datetime(epoch: float) -> datetime:
    """A stored REAL epoch as an aware UTC datetime (exact to the microsecond)."""
    return datetime.fromtimestamp(epoch, UTC)


def to_optional_datetime(epoch: float | None) -> datetime | None:
    """``to_datetime`` for a nullable column."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def attempt_from_json(entry: dict[str, Any]) -> Attempt:
    """One decoded ``history`` entry as an ``Attempt``."""
    outcome = entry.get("outcome")
    return Attempt(
        attempt=entry["attempt"],
        worker=entry["worker"],
        started_at=to_datetime(entry["started_at"]),
        finished_at=to_optional_datetime(entry.get("finished_at")),
        outcome=None if outcome is None else Outcome(outcome),
        error=entry.get("error"),
    )


def scan_from_row(row: tuple[Any, ...]) -> Scan:
    """A ``Scan`` from a row selected (or returned) in ``COLUMNS`` order."""
    return Scan(
        scan_id=row[0],
        status=ScanStatus(row[1]),
        target=row[2],
        scanner=row[3],
        options=msgspec.json.decode(row[4]),
        priority=row[5],
        attempt=row[6],
        max_attempts=row[7],
        created_at=to_datetime(row[8]),
        updated_at=to_datetime(row[9]),
        available_at=to_datetime(row[10]),
        started_at=to_optional_datetime(row[11]),
        finished_at=to_optional_datetime(row[12]),
        lease_owner=row[13],
        lease_expires_at=to_optional_datetime(row[14]),
        error=row[15],
        result=None if row[16] is None else msgspec.json.decode(row[16]),
        idempotency_key=row[17],
        cancel_requested=bool(row[18]),
        history=tuple(attempt_from_json(entry) for entry in msgspec.json.decode(row[19])),
    )


def to_json(value: Any, *, what: str) -> str:
    """JSON text for a column; ``ValidationError`` naming ``what`` if the value is not JSON."""
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValidationError(f"{what} must be JSON: {exc}") from exc


def insert_row(new: NewScan) -> tuple[Any, ...]:
    """INSERT_SCAN parameters except the trailing ``updated_at``, which the writer adds."""
    created_at = new.created_at.timestamp()
    available_at = created_at if new.available_at is None else new.available_at.timestamp()
    options = to_json(dict(new.options), what="options")
    return (new.scan_id, new.target, new.scanner, options, new.priority, new.max_attempts, created_at, available_at,
            new.idempotency_key)  # fmt: skip


def leases_json(leases: Sequence[Lease]) -> str:
    """The ``:leases`` parameter of the fenced statements: ``[[scan_id, worker, attempt], ...]``."""
    return msgspec.json.encode([(lease.scan_id, lease.worker_id, lease.attempt) for lease in leases]).decode()


def finishes_json(finishes: Sequence[Finish]) -> str:
    """The ``:finishes`` parameter of FINISH: ``[[scan_id, worker, attempt, outcome, result, error, retry_at]]``."""
    items: list[tuple[Any, ...]] = []
    for fin in finishes:
        result = None if fin.result is None else to_json(dict(fin.result), what="result")
        retry_at = None if fin.retry_at is None else fin.retry_at.timestamp()
        lease = fin.lease
        items.append((lease.scan_id, lease.worker_id, lease.attempt, str(fin.outcome), result, fin.error, retry_at))
    return msgspec.json.encode(items).decode()


__all__ = [
    "attempt_from_json",
    "finishes_json",
    "insert_row",
    "leases_json",
    "scan_from_row",
    "to_datetime",
    "to_json",
    "to_optional_datetime",
]
