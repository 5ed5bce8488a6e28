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
# Tenants (Store rules 7 and 8). Existing scans belong to 'default' (models.DEFAULT_TENANT, spelled out:
# a migration never changes); ADD COLUMN with a constant DEFAULT rewrites no row. Actors are JSON
# objects ({"token_id", "token_name"}). Idempotency keys become unique per tenant. The counts are
# kept per (tenant, status): the old per-status counts are all the 'default' tenant's, copied over
# (exact by construction, no scan of the table); triggers upsert a tenant's row on its first scan.
# The oldest Accepted scan of a tenant is the first entry of its range of a partial (tenant, created_at)
# index (every tenant's: the least of those firsts, a tenant at a time); a tenant's pages and
# export walk (tenant, scan_id).
MIGRATION_3 = (
    "ALTER TABLE scans ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'",
    "ALTER TABLE scans ADD COLUMN submitted_by TEXT",
    "ALTER TABLE scans ADD COLUMN cancelled_by TEXT",
    "DROP INDEX scans_idempotency_key",
    "CREATE UNIQUE INDEX scans_tenant_idempotency_key ON scans (tenant, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX scans_accepted_by_tenant ON scans (tenant, created_at) WHERE status = 'Accepted'",
    "CREATE INDEX scans_by_tenant ON scans (tenant, scan_id)",
    "DROP TRIGGER scans_count_insert",
    "DROP TRIGGER scans_count_update",
    "DROP TRIGGER scans_count_delete",
    "ALTER TABLE scan_counts RENAME TO scan_counts_by_status",
    """
    CREATE TABLE scan_counts (
        tenant TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (tenant, status)
    ) WITHOUT ROWID
    """,
    "INSERT INTO scan_counts (tenant, status, n) SELECT 'default', status, n FROM scan_counts_by_status",
    "DROP TABLE scan_counts_by_status",
    """
    CREATE TRIGGER scans_count_insert AFTER INSERT ON scans BEGIN
        INSERT INTO scan_counts (tenant, status, n) VALUES (NEW.tenant, NEW.status, 1)
            ON CONFLICT (tenant, status) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER scans_count_update AFTER UPDATE OF status, tenant ON scans
    WHEN OLD.status <> NEW.status OR OLD.tenant <> NEW.tenant BEGIN
        UPDATE scan_counts SET n = n - 1 WHERE tenant = OLD.tenant AND status = OLD.status;
        INSERT INTO scan_counts (tenant, status, n) VALUES (NEW.tenant, NEW.status, 1)
            ON CONFLICT (tenant, status) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER scans_count_delete AFTER DELETE ON scans BEGIN
        UPDATE scan_counts SET n = n - 1 WHERE tenant = OLD.tenant AND status = OLD.status;
    END
    """,
    # API tokens: only the secret's SHA-256 is stored, unique; scopes are a sorted JSON list of names.
    """
    CREATE TABLE api_tokens (
        token_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        scopes TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        name TEXT,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        last_used_at REAL
    ) WITHOUT ROWID
    """,
    "CREATE UNIQUE INDEX api_tokens_secret_hash ON api_tokens (secret_hash)",
    """
    CREATE TABLE tenant_limits (
        tenant TEXT PRIMARY KEY,
        max_queued INTEGER,
        rate_per_s REAL,
        weight REAL NOT NULL
    ) WITHOUT ROWID
    """,
)
# Fair share and politeness (Store rule 9). ``fair_key`` is a scan's virtual start time (weighted fair
# queueing, epoch seconds); the writer assigns it at insert from ``tenant_clocks`` (a tenant's last key,
# moved in the insert's transaction, so every process on the file shares it). Scans that may still be
# claimed (Accepted, or Running and so perhaps back to Accepted) take their created_at: the old order is
# kept; finished ones never need one (0). The claim walks (priority DESC, fair_key, scan_id): same name,
# same shape as before with one more REAL in each entry. ``target_key`` is what the per-target cap
# counts: the partial index holds only Running scans that have one, so uncapped scans (mock, noop)
# never touch it, and the capped claim counts a target's Running scans with one range search.
MIGRATION_4 = (
    "ALTER TABLE scans ADD COLUMN fair_key REAL NOT NULL DEFAULT 0",
    "ALTER TABLE scans ADD COLUMN target_key TEXT",
    "UPDATE scans SET fair_key = created_at WHERE status IN ('Accepted', 'Running')",
    "CREATE TABLE tenant_clocks (tenant TEXT PRIMARY KEY, last_key REAL NOT NULL) WITHOUT ROWID",
    "DROP INDEX scans_claimable",
    "CREATE INDEX scans_claimable ON scans (priority DESC, fair_key, scan_id, available_at) WHERE status = 'Accepted'",
    "CREATE INDEX scans_running_by_target ON scans (target_key) WHERE status = 'Running' AND target_key IS NOT NULL",
)
# Scan events and webhooks (Store rules 10 and 11). Every status transition leaves one row in
# ``scan_events``, written by triggers inside the very statement that makes it (the insert of a new
# scan, the UPDATE of a claim, finish, release, reaper or cancel): same transaction, same "now"
# (``updated_at``), no statement of its own and no Python per row. A status that does not change
# (a cancel request on a Running scan, a heartbeat) records nothing. AUTOINCREMENT: one writer holds
# the file's lock, so ``seq`` order is commit order, and a seq is never reused after a prune (event ids
# stay unique and a reader's position stays meaningful). A scan's own events are a range of
# (scan_id, seq): its stream replays from the start in O(log n). No index by tenant: a tenant's
# stream reads on from a recent position (each index is more pages per commit on the drain's path).
# Deliveries copy their event (pruning the log never breaks one); due pending ones are a range of a
# partial index; ``webhook_cursor`` is the one row saying how far the dispatcher has fanned the log out.
MIGRATION_5 = (
    """
    CREATE TABLE scan_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL
    )
    """,
    "CREATE INDEX scan_events_by_scan ON scan_events (scan_id)",
    """
    CREATE TRIGGER scans_event_insert AFTER INSERT ON scans BEGIN
        INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
            VALUES (NEW.scan_id, NEW.tenant, NEW.status, NEW.attempt, NEW.updated_at);
    END
    """,
    """
    CREATE TRIGGER scans_event_update AFTER UPDATE OF status ON scans WHEN OLD.status <> NEW.status BEGIN
        INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
            VALUES (NEW.scan_id, NEW.tenant, NEW.status, NEW.attempt, NEW.updated_at);
    END
    """,
    """
    CREATE TABLE webhook_endpoints (
        endpoint_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        description TEXT,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_secret_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant, created_at)",
    """
    CREATE TABLE webhook_deliveries (
        endpoint_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        scan_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        event_status TEXT NOT NULL,
        event_attempt INTEGER NOT NULL,
        event_at REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        last_attempt_at REAL,
        last_status_code INTEGER,
        last_error TEXT,
        delivered_at REAL,
        lease_owner TEXT,
        lease_expires_at REAL,
        PRIMARY KEY (endpoint_id, seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq, endpoint_id, lease_expires_at)"
    " WHERE status = 'pending'",
    "CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (seq)",
    "CREATE TABLE webhook_cursor (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL)",
)
# One-off callbacks and delivery retention (rule 11). A scan may carry a ``callback_url``; a tenant's
# callback endpoint has no url of its own (NULL: SQLite cannot drop a NOT NULL, so the table is
# rebuilt, which its few rows make cheap), and its deliveries copy the scan's callback_url into their
# own ``url`` at dispatch. Deliveries outlive their events: ``prune_deliveries`` walks the ended ones
# by their last attempt (a partial index), so the old index by event, used only by the prune of
# events, goes. ADD COLUMN without a default rewrites no row.
MIGRATION_6 = (
    "ALTER TABLE scans ADD COLUMN callback_url TEXT",
    """
    CREATE TABLE webhook_endpoints_6 (
        endpoint_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        url TEXT,
        event_types TEXT NOT NULL,
        description TEXT,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_secret_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "INSERT INTO webhook_endpoints_6 (endpoint_id, tenant, url, event_types, description, secret, previous_secret,"
    " previous_secret_until, created_at, updated_at) SELECT endpoint_id, tenant, url, event_types, description,"
    " secret, previous_secret, previous_secret_until, created_at, updated_at FROM webhook_endpoints",
    "DROP TABLE webhook_endpoints",
    "ALTER TABLE webhook_endpoints_6 RENAME TO webhook_endpoints",
    "CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant, created_at)",
    "ALTER TABLE webhook_deliveries ADD COLUMN url TEXT",
    "DROP INDEX webhook_deliveries_by_event",
    "CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending'",
)
# A status change counts with one upsert of two rows (the old status -1, the new +1) instead of an UPDATE
# and an upsert: the same counts (the old status's row exists: the scan was counted into it), one trigger
# statement per changed row fewer (a claim and a finish change every row; about 2.5 µs a scan).
MIGRATION_7 = (
    "DROP TRIGGER scans_count_update",
    """
    CREATE TRIGGER scans_count_update AFTER UPDATE OF status, tenant ON scans
    WHEN OLD.status <> NEW.status OR OLD.tenant <> NEW.tenant BEGIN
        INSERT INTO scan_counts (tenant, status, n) VALUES (OLD.tenant, OLD.status, -1), (NEW.tenant, NEW.status, 1)
            ON CONFLICT (tenant, status) DO UPDATE SET n = n + excluded.n;
    END
    """,
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
)
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
