"""The SQLite store's schema migrations and statements (named constants), and its row <-> model mapping.

Migrations are numbered: ``PRAGMA user_version`` holds how many are applied.
Append a new one, never edit an old one. Statements use the column order of
``COLUMNS``, which ``sqlite._scan`` reads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from scanq.exceptions import ValidationError
from scanq.models import Attempt, Lease, NewScan, Outcome, Scan, ScanStatus

# -- schema ---------------------------------------------------------------------------------------
# Numbered migrations; PRAGMA user_version is the number applied. Append, never edit.

MIGRATION_1 = (
    """
    CREATE TABLE scans (
        scan_id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('Accepted', 'Running', 'Complete', 'Error', 'Cancelled')),
        target TEXT,
        scanner TEXT NOT NULL,
        options TEXT NOT NULL,
        priority INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        available_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        lease_owner TEXT,
        lease_expires_at REAL,
        error TEXT,
        result TEXT,
        idempotency_key TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        history TEXT NOT NULL DEFAULT '[]'
    )
    """,
    # Claim order is (priority DESC, scan_id); available_at rides along so the claim
    # query filters future scans from the index alone and stops at LIMIT.
    "CREATE INDEX scans_claimable ON scans (priority DESC, scan_id, available_at) WHERE status = 'Accepted'",
    "CREATE INDEX scans_by_status ON scans (status, scan_id DESC)",
    "CREATE INDEX scans_expiring ON scans (lease_expires_at) WHERE status = 'Running'",
    "CREATE UNIQUE INDEX scans_idempotency_key ON scans (idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE TABLE scan_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO scan_counts VALUES ('Accepted', 0), ('Running', 0), ('Complete', 0), ('Error', 0), ('Cancelled', 0)",
    """
    CREATE TRIGGER scans_count_insert AFTER INSERT ON scans BEGIN
        UPDATE scan_counts SET n = n + 1 WHERE status = NEW.status;
    END
    """,
    """
    CREATE TRIGGER scans_count_update AFTER UPDATE OF status ON scans WHEN OLD.status <> NEW.status BEGIN
        UPDATE scan_counts SET n = n - 1 WHERE status = OLD.status;
        UPDATE scan_counts SET n = n + 1 WHERE status = NEW.status;
    END
    """,
    """
    CREATE TRIGGER scans_count_delete AFTER DELETE ON scans BEGIN
        UPDATE scan_counts SET n = n - 1 WHERE status = OLD.status;
    END
    """,
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (MIGRATION_1,)
SCHEMA_VERSION = len(MIGRATIONS)

# -- queries --------------------------------------------------------------------------------------

COLUMNS = (
    "scan_id, status, target, scanner, options, priority, attempt, max_attempts, created_at, updated_at,"
    " available_at, started_at, finished_at, lease_owner, lease_expires_at, error, result, idempotency_key,"
    " cancel_requested, history"
)
INSERT_SCAN = (
    "INSERT INTO scans (scan_id, status, target, scanner, options, priority, max_attempts, created_at,"
    " available_at, idempotency_key, updated_at) VALUES (?, 'Accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_COLUMNS = 10  # parameters per row of INSERT_SCAN


@functools.lru_cache(maxsize=64)
def insert_scans(rows: int) -> str:
    """INSERT_SCAN for ``rows`` rows in one statement.

    One statement is one ``sqlite3_step``: the writer thread gives up and retakes the GIL
    once per batch instead of once per row, and each retake can wait a whole switch
    interval (5 ms) behind a busy event loop.
    """
    values = ", ".join(["(?, 'Accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return INSERT_SCAN.split(" VALUES ", 1)[0] + " VALUES " + values


SELECT_SCAN = f"SELECT {COLUMNS} FROM scans WHERE scan_id = ?"
SELECT_BY_KEY = f"SELECT {COLUMNS} FROM scans WHERE idempotency_key = ?"
SELECT_STATUS = "SELECT status FROM scans WHERE scan_id = ?"
LIST_ALL = f"SELECT {COLUMNS} FROM scans WHERE scan_id < ? ORDER BY scan_id DESC LIMIT ?"
LIST_BY_STATUS = f"SELECT {COLUMNS} FROM scans WHERE status = ? AND scan_id < ? ORDER BY scan_id DESC LIMIT ?"
COUNTS = "SELECT status, n FROM scan_counts"
# scan_id is time-ordered like created_at, and (status, scan_id) is indexed: O(log n).
OLDEST_ACCEPTED = "SELECT created_at FROM scans WHERE status = 'Accepted' ORDER BY scan_id LIMIT 1"
CLAIMABLE_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM scans INDEXED BY scans_claimable WHERE status = 'Accepted' AND available_at <= ?)"
)

CLAIM = f"""
UPDATE scans SET
    status = 'Running', attempt = attempt + 1, lease_owner = :worker, lease_expires_at = :expires,
    started_at = :now, updated_at = :now,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt + 1, 'worker', :worker, 'started_at', json(:now_json),
        'finished_at', NULL, 'outcome', NULL, 'error', NULL))
WHERE scan_id IN (
    SELECT scan_id FROM scans INDEXED BY scans_claimable WHERE status = 'Accepted' AND available_at <= :now
    ORDER BY priority DESC, scan_id LIMIT :limit)
RETURNING {COLUMNS}
"""

# Fenced statements take their leases as one JSON array, so a batch is one set-based UPDATE.
# The planner must walk the leases and look each scan up by id: ``+status`` keeps it off the
# status index (with a million finished rows that plan scans every Running row per lease).
# Hot queries name their partial index (INDEXED BY), so a plan never depends on ANALYZE.
_HELD = "WITH held(scan_id, worker, attempt) AS (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(:leases))"
_IS_HELD = (
    "scans.scan_id = held.scan_id AND +scans.status = 'Running'"
    " AND scans.lease_owner = held.worker AND scans.attempt = held.attempt"
)
HEARTBEAT = f"""
{_HELD}
UPDATE scans SET lease_expires_at = :expires, updated_at = :now
FROM held WHERE {_IS_HELD}
RETURNING scans.scan_id, scans.cancel_requested
"""

FINISH = f"""
WITH held(scan_id, worker, attempt, outcome, result, error, retry_at) AS (
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6
    FROM json_each(:finishes))
UPDATE scans SET
    status = CASE held.outcome
        WHEN 'Retry' THEN 'Accepted' WHEN 'Complete' THEN 'Complete' WHEN 'Cancelled' THEN 'Cancelled'
        ELSE 'Error' END,
    result = CASE held.outcome WHEN 'Complete' THEN held.result END,
    error = CASE held.outcome WHEN 'Complete' THEN NULL ELSE held.error END,
    finished_at = CASE held.outcome WHEN 'Retry' THEN NULL ELSE :now END,
    available_at = CASE held.outcome WHEN 'Retry' THEN coalesce(held.retry_at, :now) ELSE scans.available_at END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now,
    history = json_set(scans.history, '$[#-1].finished_at', json(:now_json), '$[#-1].outcome', held.outcome,
                       '$[#-1].error', held.error)
FROM held WHERE {_IS_HELD}
RETURNING scans.scan_id
"""

# A released scan whose cancel was requested is Cancelled (its attempt ends), not run again.
RELEASE = f"""
{_HELD}
UPDATE scans SET
    status = CASE WHEN scans.cancel_requested THEN 'Cancelled' ELSE 'Accepted' END,
    attempt = CASE WHEN scans.cancel_requested THEN scans.attempt ELSE scans.attempt - 1 END,
    available_at = CASE WHEN scans.cancel_requested THEN scans.available_at ELSE :now END,
    finished_at = CASE WHEN scans.cancel_requested THEN :now END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now,
    history = json_set(scans.history, '$[#-1].finished_at', json(:now_json),
                       '$[#-1].outcome', CASE WHEN scans.cancel_requested THEN 'Cancelled' ELSE 'Released' END,
                       '$[#-1].error', NULL)
FROM held WHERE {_IS_HELD}
RETURNING scans.status
"""

REQUEUE_EXPIRED = """
UPDATE scans SET
    status = CASE WHEN cancel_requested THEN 'Cancelled' WHEN attempt < max_attempts THEN 'Accepted' ELSE 'Error' END,
    error = CASE WHEN NOT cancel_requested AND attempt >= max_attempts THEN :error ELSE error END,
    finished_at = CASE WHEN NOT cancel_requested AND attempt < max_attempts THEN NULL ELSE :now END,
    available_at = CASE WHEN NOT cancel_requested AND attempt < max_attempts THEN :now ELSE available_at END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now,
    history = json_set(history, '$[#-1].finished_at', json(:now_json), '$[#-1].outcome', 'LeaseExpired',
                       '$[#-1].error', :error)
WHERE scan_id IN (
    SELECT scan_id FROM scans INDEXED BY scans_expiring WHERE status = 'Running' AND lease_expires_at <= :now
    ORDER BY lease_expires_at LIMIT :limit)
RETURNING status
"""

CANCEL = f"""
UPDATE scans SET
    status = CASE status WHEN 'Accepted' THEN 'Cancelled' ELSE status END,
    finished_at = CASE status WHEN 'Accepted' THEN :now ELSE finished_at END,
    cancel_requested = CASE status WHEN 'Running' THEN 1 ELSE cancel_requested END,
    updated_at = :now
WHERE scan_id = :scan_id AND status IN ('Accepted', 'Running')
RETURNING {COLUMNS}
"""


# -- rows <-> models ------------------------------------------------------------------------------


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
