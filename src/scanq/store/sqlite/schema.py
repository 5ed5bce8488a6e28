"""The SQLite schema: numbered migrations, ``PRAGMA user_version``, and WAL mode.

``PRAGMA user_version`` holds how many migrations are applied. Append a new
one, never edit an old one; ``tests/unit/test_sqlite_store.py`` checks that the
migrations build the same schema as opening a store.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from scanq.exceptions import StoreError
from scanq.store.sqlite.connection import LOCK_RETRY_MAX_S, begin_immediate, is_unavailable

logger = logging.getLogger(__name__)

MIN_SQLITE_VERSION = (3, 38, 0)  # RETURNING, UPDATE FROM, the ->> JSON operator

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
# Finished scans: throughput counts, export and retention (store/sqlite/finished.py). The index
# is partial on finished_at, so the live queue's rows (Accepted, Running) are not in it; the
# leaders table holds one row per role (retention) naming the process that holds it and until when.
MIGRATION_2 = (
    "CREATE INDEX scans_finished ON scans (status, finished_at, scan_id) WHERE finished_at IS NOT NULL",
    "CREATE TABLE scanq_leaders (role TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (MIGRATION_1, MIGRATION_2)
SCHEMA_VERSION = len(MIGRATIONS)


def check_sqlite_version() -> None:
    """Refuse a SQLite library too old for the statements (``StoreError``)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old; scanq needs 3.38 or newer")


def migrate(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Create or upgrade the schema in one transaction; concurrent openers serialise on the write lock."""
    begin_immediate(conn, timeout_s=timeout_s)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} is newer than this scanq ({SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                conn.execute(statement)
            logger.info("SQLite schema migrated to version %d", number + 1)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def set_wal(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Switch the file to WAL (persistent); another process may hold a lock on a brand-new file for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not is_unavailable(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_RETRY_MAX_S)
            continue
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (journal_mode={mode}); is the file on a network filesystem?")
        return


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "check_sqlite_version", "migrate", "set_wal"]
