"""Migration 9: a scan's current attempt is told by its columns; history holds the rest.

Scans claimed before it (an open entry in history, no ``attempt_worker``) end as they did; new ones
read back the same history, and a finish whose entry the row tells writes no history at all.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from scanq.ids import new_scan_id
from scanq.models import Attempt, Finish, Lease, Outcome, Scan, ScanStatus
from scanq.store.postgres import PostgresStore, migrations
from tests.contract.helpers import new_scan

LEASE_S = 30.0
MIGRATIONS_TABLE = (
    "CREATE TABLE scanq_migrations (version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)
# The claim of version 8 (claim_set then): the attempt's entry opened in history.
LEGACY_CLAIM = """
UPDATE scans AS s
SET status = 'Running', attempt = s.attempt + 1, lease_owner = $2,
    lease_expires_at = now() + make_interval(secs => $3), started_at = now(), updated_at = now(),
    history = s.history || jsonb_build_array(jsonb_build_object(
        'attempt', s.attempt + 1, 'worker', $2::text, 'started_at', now(),
        'finished_at', NULL, 'outcome', NULL, 'error', NULL))
WHERE s.scan_id = $1::uuid
"""
STORED = "SELECT history::text AS history, attempt_worker FROM scans WHERE scan_id = $1::uuid"


def opened(scan: Scan, worker: str) -> Attempt:
    assert scan.started_at is not None
    return Attempt(attempt=scan.attempt, worker=worker, started_at=scan.started_at)


def ended(scan: Scan, worker: str, outcome: Outcome, error: str | None = None) -> Attempt:
    assert scan.started_at is not None and scan.finished_at is not None
    return Attempt(
        attempt=scan.attempt,
        worker=worker,
        started_at=scan.started_at,
        finished_at=scan.finished_at,
        outcome=outcome,
        error=error,
    )


async def stored(url: str, scan_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(STORED, scan_id)
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def test_scans_claimed_before_migration_9_end_as_before(postgres_empty_database_url: str) -> None:
    url = postgres_empty_database_url
    done, retried, expired = (new_scan_id() for _ in range(3))
    conn = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
    try:
        await conn.execute(MIGRATIONS_TABLE)
        for version, name, sql in migrations():
            if version < 9:
                await conn.execute(sql)
                await conn.execute("INSERT INTO scanq_migrations (version, name) VALUES ($1, $2)", version, name)
        for scan_id in (done, retried, expired):
            await conn.execute(
                "INSERT INTO scans (scan_id, status, scanner, max_attempts, created_at, updated_at, available_at)"
                " VALUES ($1::uuid, 'Accepted', 'noop', 3, now(), now(), now())",
                scan_id,
            )
            await conn.execute(LEGACY_CLAIM, scan_id, "old", -1.0 if scan_id == expired else LEASE_S)
    finally:
        await conn.close()

    async with PostgresStore(url) as store:
        assert store.schema_version == migrations()[-1][0] == 9
        running = await store.get(scan_id=done)
        assert running.history == (opened(running, "old"),)
        lease = Lease(scan_id=done, worker_id="old", attempt=1)
        retry = Lease(scan_id=retried, worker_id="old", attempt=1)
        assert await store.finish(
            finishes=[
                Finish(lease=lease, outcome=Outcome.COMPLETE, result={"ok": True}),
                Finish(lease=retry, outcome=Outcome.RETRY, error="flaky"),
            ]
        ) == [True, True]
        assert await store.requeue_expired(limit=10) == 1
        complete = await store.get(scan_id=done)
        waiting = await store.get(scan_id=retried)
        requeued = await store.get(scan_id=expired)
        [again] = await store.claim(worker_id="new", limit=1, lease_s=LEASE_S)
        assert again.scan_id in (retried, expired)
        second = Lease(scan_id=again.scan_id, worker_id="new", attempt=2)
        assert await store.finish(finishes=[Finish(lease=second, outcome=Outcome.COMPLETE, result={})]) == [True]
        final = await store.get(scan_id=again.scan_id)

    assert complete.history == (ended(complete, "old", Outcome.COMPLETE),)
    assert waiting.status is ScanStatus.ACCEPTED and waiting.history[0].outcome is Outcome.RETRY
    assert waiting.history[0].error == "flaky" and waiting.history[0].finished_at is not None
    assert requeued.history[0].outcome is Outcome.LEASE_EXPIRED and len(requeued.history) == 1
    first = waiting.history[0] if again.scan_id == retried else requeued.history[0]
    assert again.history == (first, opened(again, "new"))
    assert final.history == (first, ended(final, "new", Outcome.COMPLETE))
    assert (await stored(url, done))["attempt_worker"] is None


async def test_a_finish_the_row_tells_writes_no_history(postgres_database_url: str) -> None:
    """Complete, Error and Cancelled keep the entry implied; a Complete that reports an error writes it."""
    async with PostgresStore(postgres_database_url) as store:
        ids = [(await store.create(scan=new_scan())).scan.scan_id for _ in range(4)]
        claimed = await store.claim(worker_id="w1", limit=4, lease_s=LEASE_S)
        assert [scan.history for scan in claimed] == [(opened(scan, "w1"),) for scan in claimed]
        assert await store.get(scan_id=claimed[0].scan_id) == claimed[0]
        leases = {scan.scan_id: Lease(scan_id=scan.scan_id, worker_id="w1", attempt=1) for scan in claimed}
        outcomes = [
            Finish(lease=leases[ids[0]], outcome=Outcome.COMPLETE, result={}),
            Finish(lease=leases[ids[1]], outcome=Outcome.ERROR, error="boom"),
            Finish(lease=leases[ids[2]], outcome=Outcome.CANCELLED, error="stopped"),
            Finish(lease=leases[ids[3]], outcome=Outcome.COMPLETE, result={}, error="warned"),
        ]
        assert await store.finish(finishes=outcomes) == [True] * 4
        scans = [await store.get(scan_id=scan_id) for scan_id in ids]
        listed = {scan.scan_id: scan for scan in (await store.list_scans(limit=10)).scans}
    rows = [await stored(postgres_database_url, scan_id) for scan_id in ids]

    assert [scan.history for scan in scans] == [
        (ended(scans[0], "w1", Outcome.COMPLETE),),
        (ended(scans[1], "w1", Outcome.ERROR, "boom"),),
        (ended(scans[2], "w1", Outcome.CANCELLED, "stopped"),),
        (ended(scans[3], "w1", Outcome.COMPLETE, "warned"),),
    ]
    assert scans[3].error is None
    assert [listed[scan.scan_id] for scan in scans] == scans
    assert [(row["history"], row["attempt_worker"]) for row in rows[:3]] == [("[]", "w1")] * 3
    assert rows[3]["attempt_worker"] is None and rows[3]["history"] != "[]"
