"""SQLite-only details of the event log and webhooks: migration, ids after a prune, plans, wake-ups.

The behaviour every backend shares is in ``tests/contract/test_events.py`` and ``test_webhook_store.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta

from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path
from scanq.store.sqlite.events import read_events_sql

WAKE_WITHIN_S = 10.0
NO_WAKE_S = 60.0
TERM_S = 30.0


def new_scan(**fields: object) -> NewScan:
    return NewScan(**{"scan_id": new_scan_id(), "created_at": datetime.now(UTC), **fields})  # type: ignore[arg-type]


async def test_the_events_migration_records_only_transitions_made_after_it(sqlite_url: str) -> None:
    """A file of schema 4: its scans have no past events; their next transition is the first one recorded."""
    path = sqlite_path(sqlite_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    scan_id, at = new_scan_id(), datetime.now(UTC).timestamp() - 60
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:4]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.execute(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at) VALUES (?, 'Accepted', 'mock', '{}', 0, 3, ?, ?, ?)",
            (scan_id, at, at, at),
        )
    conn.close()

    async with SQLiteStore(sqlite_url) as store:
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
        assert await store.read_events() == []
        (claimed,) = await store.claim(worker_id="w", limit=1, lease_s=TERM_S)
        (event,) = await store.read_events()

    assert (event.event_id, event.scan_id, event.status, event.attempt) == ("1", scan_id, ScanStatus.RUNNING, 1)
    assert event.at == claimed.updated_at


async def test_event_ids_are_never_reused_after_the_log_is_pruned(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create_many(scans=[new_scan(), new_scan()])
        assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=TERM_S)
        assert await store.dispatch_events(owner="d") == 2
        assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=TERM_S)
        assert await store.prune_events(before=datetime.now(UTC) + timedelta(days=1), owner="p") == 2
        assert await store.events_head() == "2"
        await store.create(scan=new_scan())

        (event,) = await store.read_events(after="2")

    assert event.event_id == "3"


def test_event_reads_walk_a_range_of_the_log_or_of_the_scan_index() -> None:
    conn = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    params = {"after": 0, "limit": 10, "scan_id": "s", "tenant": "t", "statuses": "[]"}

    def plan(**filters: bool) -> str:
        sql = read_events_sql(**filters)
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "USING INTEGER PRIMARY KEY (rowid>?)" in plan(has_scan=False, has_tenant=False, has_statuses=True)
    assert "USING INTEGER PRIMARY KEY (rowid>?)" in plan(has_scan=False, has_tenant=True, has_statuses=True)
    assert "scan_events_by_scan (scan_id=? AND rowid>?)" in plan(has_scan=True, has_tenant=True, has_statuses=False)
    assert "TEMP B-TREE" not in plan(has_scan=True, has_tenant=False, has_statuses=False)


async def test_a_wait_after_an_unread_event_returns_at_once(sqlite_url: str) -> None:
    """An event that settled between a task's read and its wait (and woke another waiter) is not slept through."""
    async with SQLiteStore(sqlite_url) as store, SQLiteStore(sqlite_url) as producer:
        assert await store.read_events() == []
        other_waiter = asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S))
        await asyncio.sleep(0.2)
        await producer.create(scan=new_scan())
        await asyncio.wait_for(other_waiter, WAKE_WITHIN_S)

        started = time.monotonic()
        await store.wait_for_events(timeout_s=NO_WAKE_S)

        assert time.monotonic() - started < WAKE_WITHIN_S
        assert len(await store.read_events()) == 1


async def test_a_wait_after_reading_everything_sleeps_until_the_next_event(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create(scan=new_scan())
        assert len(await store.read_events()) == 1

        started = time.monotonic()
        await store.wait_for_events(timeout_s=0.3)
        assert time.monotonic() - started >= 0.25

        waiting = asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S))
        await asyncio.sleep(0.1)
        await store.create(scan=new_scan())
        await asyncio.wait_for(waiting, WAKE_WITHIN_S)


async def test_dispatch_with_no_endpoint_only_moves_the_cursor(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create_many(scans=[new_scan() for _ in range(5)])
        assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=TERM_S)

        assert await store.dispatch_events(owner="d", limit=3) == 3
        assert await store.dispatch_events(owner="d") == 2
        assert await store.dispatch_events(owner="d") == 0

    with sqlite3.connect(sqlite_path(sqlite_url)) as conn:
        assert conn.execute("SELECT seq FROM webhook_cursor").fetchall() == [(5,)]
        assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    conn.close()
