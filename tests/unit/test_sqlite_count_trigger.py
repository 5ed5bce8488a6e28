"""SQLite schema 7: a status change counts with one two-row upsert; the counts stay those of the rows.

The contract suite checks the counts on a fresh file; here, a file made at schema 6 (the old trigger,
an UPDATE and an upsert) and scans already in it, migrated, then moved through every transition.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path

# Schema 6's scans_count_update, as MIGRATION_3 made it.
OLD_TRIGGER = next(statement for statement in MIGRATIONS[2] if "CREATE TRIGGER scans_count_update" in statement)
TENANTS = ("default", "acme")


def new_scan(tenant: str) -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), tenant=tenant)


def counted_and_stored(path: str) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """scan_counts (its non-zero rows) and the scans counted by (tenant, status)."""
    with sqlite3.connect(path) as conn:
        counted = {(t, s): n for t, s, n in conn.execute("SELECT tenant, status, n FROM scan_counts") if n}
        stored = {(t, s): n for t, s, n in conn.execute("SELECT tenant, status, count(*) FROM scans GROUP BY 1, 2")}
    conn.close()
    return counted, stored


async def test_counts_stay_exact_through_every_transition_after_the_migration(sqlite_url: str) -> None:
    path = str(sqlite_path(sqlite_url))
    async with SQLiteStore(sqlite_url) as store:
        for tenant in TENANTS:
            for _ in range(4):
                await store.create(scan=new_scan(tenant))
    with sqlite3.connect(path) as conn:  # back to schema 6: its trigger, its version
        conn.execute("DROP TRIGGER scans_count_update")
        conn.execute(OLD_TRIGGER)
        conn.execute("PRAGMA user_version = 6")
    conn.close()

    async with SQLiteStore(sqlite_url) as store:
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION == 7
        claimed = await store.claim(worker_id="w1", limit=6, lease_s=60.0)
        leases = [Lease(scan_id=scan.scan_id, worker_id="w1", attempt=scan.attempt) for scan in claimed]
        outcomes = [
            Finish(lease=leases[0], outcome=Outcome.COMPLETE, result={}),
            Finish(lease=leases[1], outcome=Outcome.ERROR, error="boom"),
            Finish(lease=leases[2], outcome=Outcome.CANCELLED),
            Finish(lease=leases[3], outcome=Outcome.RETRY, error="again", retry_at=datetime.now(UTC)),
        ]
        assert await store.finish(finishes=outcomes) == [True] * 4
        assert await store.release(leases=leases[4:5]) == 1
        waiting = [scan for scan in (await store.list_scans(limit=50)).scans if scan.status is ScanStatus.ACCEPTED]
        await store.cancel(scan_id=waiting[0].scan_id)
        counted, stored = counted_and_stored(path)
        assert counted == stored
        stats = await store.stats()
        assert sum(stats.counts.values()) == 2 * 4
        for tenant in TENANTS:
            by_tenant = (await store.stats(tenant=tenant)).counts
            assert {(tenant, str(status)): n for status, n in by_tenant.items() if n} == {
                key: n for key, n in stored.items() if key[0] == tenant
            }
