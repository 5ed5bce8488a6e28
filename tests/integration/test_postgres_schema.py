"""The PostgreSQL schema: migrations are recorded once, and the hot queries use the indexes meant for them.

Migrations raced by several processes: ``tests/acceptance/test_store_processes.py``.

The plan tests fill the table with many finished scans (straight SQL: the
store's path for them is tested elsewhere) and check that claim, reaper, list
and stats read only a few pages, not the whole table.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from scanq.exceptions import StoreError
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store.postgres import (
    CLAIM,
    COUNT_FOLD_LOCK_KEY,
    FOLD_COUNTS,
    LIST_STATUS,
    REQUEUE_EXPIRED,
    STATS,
    PostgresStore,
    migrations,
)
from tests.integration.plans import assert_no_table_scan, explain, indexes_used, nodes, pages

FINISHED_ROWS = 50_000
ACCEPTED_ROWS = 2_000
RUNNING_ROWS = 100
# Pages a hot query may touch with 50,000 finished scans in the table (the table itself is ~1,000 pages).
PAGE_BUDGET = 100
CLAIM_LIMIT = 20
PAGES_PER_UPDATED_ROW = 15
FILL = """
INSERT INTO scans (scan_id, status, scanner, priority, attempt, max_attempts, created_at, updated_at,
                   available_at, started_at, finished_at, lease_owner, lease_expires_at, result, history)
SELECT gen_random_uuid(), s.status, 'mock', (i % 3), 1, 3, now(), now(), now(),
       now(), CASE WHEN s.status = 'Complete' THEN now() END,
       CASE WHEN s.status = 'Running' THEN 'w' END,
       CASE WHEN s.status = 'Running' THEN now() + interval '1 hour' END,
       CASE WHEN s.status = 'Complete' THEN '{"ok": true}'::jsonb END, '[]'
FROM (SELECT i, CASE WHEN i <= $1::int THEN 'Complete'
                     WHEN i <= $1::int + $2::int THEN 'Accepted' ELSE 'Running' END AS status
      FROM generate_series(1, $1::int + $2::int + $3::int) AS i) AS s
"""


@pytest.fixture
async def filled(postgres_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute(FILL, FINISHED_ROWS, ACCEPTED_ROWS, RUNNING_ROWS)
        await conn.execute("VACUUM ANALYZE scans")
        yield conn
    finally:
        await conn.close()


def _pages_read_from(plan: dict[str, Any], relation: str) -> int:
    """Pages read by the nodes that scan ``relation`` or its indexes (a node's count includes its children)."""
    return sum(pages(node) for node in nodes(plan) if node.get("Relation Name") == relation)


@pytest.mark.slow
async def test_claim_walks_the_partial_index_and_reads_few_pages(filled: asyncpg.Connection[Any]) -> None:
    plan = await explain(filled, CLAIM, "explain-worker", CLAIM_LIMIT, 30.0)
    assert_no_table_scan(plan)
    assert "scans_claimable" in indexes_used(plan)
    assert plan["Actual Rows"] == CLAIM_LIMIT
    # Picking reads about one index entry and one row per claimed scan, whatever the table holds.
    picking = next(node for node in nodes(plan) if node["Node Type"] == "Limit")
    assert pages(picking) <= 3 * CLAIM_LIMIT + 10
    # Updating rewrites each row and its index entries: a bounded cost per claimed scan.
    assert pages(plan) <= PAGES_PER_UPDATED_ROW * CLAIM_LIMIT


@pytest.mark.slow
async def test_claim_generic_plan_uses_the_partial_index(filled: asyncpg.Connection[Any]) -> None:
    """asyncpg prepares statements; after a few runs PostgreSQL may switch to a generic plan."""
    await filled.execute(f"PREPARE claim_statement AS {CLAIM}")
    await filled.execute("SET plan_cache_mode = force_generic_plan")
    rows = await filled.fetch("EXPLAIN (FORMAT JSON) EXECUTE claim_statement('w', 50, 30.0)")
    plan = json.loads(rows[0][0])[0]["Plan"]
    assert_no_table_scan(plan)
    assert "scans_claimable" in indexes_used(plan)


@pytest.mark.slow
async def test_reaper_and_lists_stay_off_the_finished_rows(filled: asyncpg.Connection[Any]) -> None:
    reaper = await explain(filled, REQUEUE_EXPIRED, 1000)
    assert_no_table_scan(reaper)
    assert pages(reaper) < PAGE_BUDGET * 3  # walks the 100 Running scans

    page = await explain(filled, LIST_STATUS, 51, "Accepted")
    assert_no_table_scan(page)
    assert "scans_by_status" in indexes_used(page)
    assert pages(page) < PAGE_BUDGET


@pytest.mark.slow
async def test_stats_reads_counters_not_the_table(filled: asyncpg.Connection[Any]) -> None:
    plan = await explain(filled, STATS)
    assert_no_table_scan(plan)
    assert _pages_read_from(plan, "scans") < 10  # one index probe for the oldest Accepted scan
    assert pages(plan) < PAGE_BUDGET


async def test_stats_stay_exact_through_the_store(postgres_database_url: str) -> None:
    async with PostgresStore(postgres_database_url) as store:
        now = datetime.now(UTC)
        await store.create_many(scans=[NewScan(scan_id=new_scan_id(), created_at=now) for _ in range(30)])
        claimed = await store.claim(worker_id="w", limit=10, lease_s=30)
        outcomes = [Outcome.COMPLETE] * 5 + [Outcome.ERROR] * 2 + [Outcome.RETRY] * 2 + [Outcome.CANCELLED]
        await store.finish(
            finishes=[
                Finish(lease=Lease(scan_id=s.scan_id, worker_id="w", attempt=1), outcome=o, error="x", result={})
                for s, o in zip(claimed, outcomes, strict=True)
            ]
        )
        await store.cancel(scan_id=(await store.list_scans(status=ScanStatus.ACCEPTED, limit=1)).scans[0].scan_id)
        counted = (await store.stats()).counts
        conn = await asyncpg.connect(postgres_database_url)
        try:
            actual = {
                row["status"]: row["n"]
                for row in await conn.fetch("SELECT status, count(*) AS n FROM scans GROUP BY status")
            }
            await conn.execute(FOLD_COUNTS, COUNT_FOLD_LOCK_KEY)
        finally:
            await conn.close()
        assert {str(k): v for k, v in counted.items() if v} == actual
        assert (await store.stats()).counts == counted  # unchanged by folding


async def test_migrations_recorded_once(postgres_empty_database_url: str) -> None:
    async with PostgresStore(postgres_empty_database_url) as store:
        assert store.schema_version == migrations()[-1][0]
    async with PostgresStore(postgres_empty_database_url) as store:  # reopening applies nothing
        assert store.schema_version == migrations()[-1][0]
    conn = await asyncpg.connect(postgres_empty_database_url)
    try:
        rows = await conn.fetch("SELECT version, name FROM scanq_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [(row["version"], row["name"]) for row in rows] == [(v, name) for v, name, _ in migrations()]


async def test_table_storage_settings_and_indexes(postgres_database_url: str) -> None:
    conn = await asyncpg.connect(postgres_database_url)
    try:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'scans'::regclass")
        indexes = {
            row["indexname"]: row["indexdef"]
            for row in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'scans'"
            )
        }
    finally:
        await conn.close()
    assert "fillfactor=75" in options
    assert "autovacuum_vacuum_scale_factor=0.01" in options
    assert "WHERE (status = 'Accepted'::text)" in indexes["scans_claimable"]
    assert "(priority DESC, scan_id, available_at)" in indexes["scans_claimable"]
    assert "WHERE (idempotency_key IS NOT NULL)" in indexes["scans_idempotency_key"]
    assert "UNIQUE" in indexes["scans_idempotency_key"]
    assert "(status, scan_id)" in indexes["scans_by_status"]


async def test_a_read_only_session_opens_and_reads(postgres_database_url: str) -> None:
    """What a read replica allows: a status service opens (no migration write) and reads; writes are refused."""
    async with PostgresStore(postgres_database_url) as primary:
        created = await primary.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
    parts = urlsplit(postgres_database_url)
    read_only = urlunsplit(parts._replace(query=f"{parts.query}&default_transaction_read_only=on"))
    async with PostgresStore(read_only) as replica:
        assert (await replica.get(scan_id=created.scan.scan_id)).status == ScanStatus.ACCEPTED
        assert (await replica.stats()).counts[ScanStatus.ACCEPTED] == 1
        assert [scan.scan_id for scan in (await replica.list_scans()).scans] == [created.scan.scan_id]
        with pytest.raises(StoreError):
            await replica.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))


async def test_sessions_commit_durably_even_when_the_database_says_otherwise(
    postgres_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(postgres_database_url)
    weakened = urlunsplit(parts._replace(query=f"{parts.query}&synchronous_commit=off"))
    async with PostgresStore(weakened) as store:
        pool = store._pool  # the setting is per session: ask one of the store's own connections
        assert pool is not None
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    assert "synchronous_commit is off" in caplog.text
