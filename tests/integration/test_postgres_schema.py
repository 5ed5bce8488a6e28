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
    statements,
)
from scanq.store.postgres.rows import new_scan_arrays
from scanq.store.postgres.store import TARGET_LOCK_STRIPES
from tests.integration.plans import assert_no_table_scan, explain, indexes_used, nodes, pages

FINISHED_ROWS = 50_000
ACCEPTED_ROWS = 2_000
RUNNING_ROWS = 100
# Pages a hot query may touch with 50,000 finished scans in the table (the table itself is ~1,000 pages).
PAGE_BUDGET = 100
CLAIM_LIMIT = 20
PAGES_PER_UPDATED_ROW = 15
# Advisory locks held in this test's database (the server is shared).
ADVISORY_LOCKS_HERE = (
    "SELECT count(*) FROM pg_locks AS l JOIN pg_database AS d ON d.oid = l.database"
    " WHERE l.locktype = 'advisory' AND d.datname = current_database()"
)
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
async def test_untargeted_claim_walks_the_partial_index_and_reads_few_pages(filled: asyncpg.Connection[Any]) -> None:
    """The first statement of a capped claim costs what a claim without a cap does, in any plan."""
    plan = await explain(filled, statements.CLAIM_UNTARGETED, "explain-worker", CLAIM_LIMIT, 30.0)
    assert_no_table_scan(plan)
    assert "scans_claimable" in indexes_used(plan)
    walk = next(node for node in nodes(plan) if node["Node Type"] == "Limit")
    assert walk["Actual Rows"] == CLAIM_LIMIT
    assert pages(walk) <= 3 * CLAIM_LIMIT + 10
    assert pages(plan) <= PAGES_PER_UPDATED_ROW * CLAIM_LIMIT

    await filled.execute(f"PREPARE untargeted_statement AS {statements.CLAIM_UNTARGETED}")
    await filled.execute("SET plan_cache_mode = force_generic_plan")
    rows = await filled.fetch("EXPLAIN (FORMAT JSON) EXECUTE untargeted_statement('w', 50, 30.0)")
    generic = json.loads(rows[0][0])[0]["Plan"]
    assert_no_table_scan(generic)
    assert "scans_claimable" in indexes_used(generic)


@pytest.mark.slow
async def test_capped_claim_walks_the_partial_index_and_reads_few_pages(filled: asyncpg.Connection[Any]) -> None:
    """With targets spread out, a claim with a cap costs about what one without does: one window, no rescan."""
    # 1,000 targets taken in turn along the queue (claim order), as a varied submission would spread them.
    await filled.execute(
        "UPDATE scans AS s SET target_key = 't' || q.n % 1000 FROM ("
        " SELECT scan_id, row_number() OVER (ORDER BY priority DESC, fair_key, scan_id) AS n"
        " FROM scans WHERE status = 'Accepted') AS q WHERE s.scan_id = q.scan_id"
    )
    await filled.execute("VACUUM ANALYZE scans")
    window = CLAIM_LIMIT + CLAIM_LIMIT // 4
    lock_args = (2, window, statements.TARGET_LOCK_CLASS, TARGET_LOCK_STRIPES)

    locking = await explain(filled, statements.LOCK_TARGETS, *lock_args)
    assert_no_table_scan(locking)
    assert {"scans_claimable", "scans_running_target"} <= indexes_used(locking)
    assert pages(locking) <= 3 * window + 10

    async with filled.transaction():
        stripes = await filled.fetchval(statements.LOCK_TARGETS, *lock_args)
        assert len(stripes) == min(window, TARGET_LOCK_STRIPES)
        args = ("explain-worker", CLAIM_LIMIT, 30.0, 2, window, stripes, TARGET_LOCK_STRIPES)
        plan = await explain(filled, statements.CLAIM_CAPPED, *args)
        assert_no_table_scan(plan)
        assert {"scans_claimable", "scans_running_target"} <= indexes_used(plan)
        walk = next(node for node in nodes(plan) if node["Node Type"] == "Limit")
        assert walk["Actual Rows"] == window
        assert pages(walk) <= 3 * window + 10
        # About the pages of a claim without a cap: the window's locks and the Running scans counted.
        assert pages(plan) <= 2 * PAGES_PER_UPDATED_ROW * CLAIM_LIMIT
        claimed = [row for row in await filled.fetch(statements.CLAIM_CAPPED, *args) if row["scan_id"] is not None]
    assert len(claimed) == CLAIM_LIMIT
    running = "SELECT count(*) FROM scans WHERE status = 'Running' AND target_key IS NOT NULL"
    assert await filled.fetchval(running) == CLAIM_LIMIT
    # The stripes' locks ended with the transaction.
    assert await filled.fetchval(ADVISORY_LOCKS_HERE) == 0

    await filled.execute(f"PREPARE capped_statement AS {statements.CLAIM_CAPPED}")
    await filled.execute("SET plan_cache_mode = force_generic_plan")
    rows = await filled.fetch(
        f"EXPLAIN (FORMAT JSON) EXECUTE capped_statement('w', 50, 30.0, 2, {window}, '{{1,2}}', {TARGET_LOCK_STRIPES})"
    )
    generic = json.loads(rows[0][0])[0]["Plan"]
    assert_no_table_scan(generic)
    assert "scans_claimable" in indexes_used(generic)


@pytest.mark.slow
async def test_insert_probes_the_keys_it_is_given_never_the_whole_table(filled: asyncpg.Connection[Any]) -> None:
    """The replay check of a batch (rule 9: a replay takes no fair key) is one index probe per key, any plan."""
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), idempotency_key=f"k{i}") for i in range(500)]
    arrays = list(new_scan_arrays(news))
    arrays[3] = ["{}"] * len(news)  # options as json text: this connection has no json codec

    plan = await explain(filled, statements.INSERT_SCANS, *arrays)

    assert_no_table_scan(plan)
    assert "scans_idempotency_key" in indexes_used(plan)
    await filled.execute(f"PREPARE insert_statement AS {statements.INSERT_SCANS}")
    await filled.execute("SET plan_cache_mode = force_generic_plan")
    empty = ", ".join(["'{}'"] * len(arrays))
    rows = await filled.fetch(f"EXPLAIN (FORMAT JSON) EXECUTE insert_statement({empty})")
    assert_no_table_scan(json.loads(rows[0][0])[0]["Plan"])


@pytest.mark.slow
async def test_reaper_and_lists_stay_off_the_finished_rows(filled: asyncpg.Connection[Any]) -> None:
    reaper = await explain(filled, REQUEUE_EXPIRED, 1000)
    assert_no_table_scan(reaper)
    assert pages(reaper) < PAGE_BUDGET * 3  # walks the 100 Running scans

    page = await explain(filled, LIST_STATUS, 51, "Accepted")
    assert_no_table_scan(page)
    assert "scans_by_status" in indexes_used(page)
    # The page's ids from the index, then one probe of scans_pkey per row (test_postgres_list_plans.py).
    assert pages(page) < 4 * 51


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


async def test_a_newer_schema_is_refused(postgres_empty_database_url: str) -> None:
    """A database a newer scanq migrated is refused: its rows may say what this scanq cannot read."""
    async with PostgresStore(postgres_empty_database_url):
        pass
    newer = migrations()[-1][0] + 1
    conn = await asyncpg.connect(postgres_empty_database_url)
    try:
        await conn.execute("INSERT INTO scanq_migrations (version, name) VALUES ($1, 'from_the_future')", newer)
    finally:
        await conn.close()

    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this scanq"):
        await PostgresStore(postgres_empty_database_url).open()


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
    assert "(priority DESC, fair_key, scan_id, available_at)" in indexes["scans_claimable"]
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


async def test_migration_5_keeps_the_order_of_the_queue_it_finds(postgres_empty_database_url: str) -> None:
    """Scans Accepted before fair keys get their creation time as key: they keep their order, ahead of new ones."""
    conn = await asyncpg.connect(postgres_empty_database_url)
    try:
        await conn.execute(
            "CREATE TABLE scanq_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in migrations():
            if version < 5:
                await conn.execute(sql)
                await conn.execute("INSERT INTO scanq_migrations (version, name) VALUES ($1, $2)", version, name)
        old = [new_scan_id() for _ in range(3)]  # time-ordered ids: the old claim order (priority, scan_id)
        urgent = new_scan_id()
        rows = [(old[0], 0, 30.0), (old[1], 0, 20.0), (old[2], 0, 10.0), (urgent, 5, 5.0)]
        for scan_id, priority, age_s in rows:
            await conn.execute(
                "INSERT INTO scans (scan_id, status, scanner, priority, max_attempts, created_at, updated_at,"
                " available_at) VALUES ($1::uuid, 'Accepted', 'noop', $2, 3, now() - make_interval(secs => $3),"
                " now(), now() - make_interval(secs => $3))",
                scan_id,
                priority,
                age_s,
            )
    finally:
        await conn.close()

    async with PostgresStore(postgres_empty_database_url) as store:
        conn = await asyncpg.connect(postgres_empty_database_url)
        try:
            keyed = await conn.fetchval("SELECT bool_and(fair_key = extract(epoch FROM created_at)) FROM scans")
        finally:
            await conn.close()
        new = (await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))).scan
        claimed = await store.claim(worker_id="w", limit=10, lease_s=30.0)

    assert keyed
    assert [scan.scan_id for scan in claimed] == [urgent, *old, new.scan_id]


async def test_a_capped_claim_counts_running_scans_and_finish_frees_their_slots(postgres_database_url: str) -> None:
    """No counter table: the Running scans of a target are counted (scans_running_target), finish does nothing extra."""
    async with PostgresStore(postgres_database_url) as store:
        now = datetime.now(UTC)
        await store.create_many(
            scans=[NewScan(scan_id=new_scan_id(), created_at=now, target_key=f"t{i % 3}") for i in range(6)]
        )
        claimed = await store.claim(worker_id="w", limit=6, lease_s=30.0, max_per_target=1)
        assert len(claimed) == 3
        assert await store.claim(worker_id="w", limit=6, lease_s=30.0, max_per_target=1) == []
        done = claimed[:2]
        await store.finish(
            finishes=[
                Finish(lease=Lease(scan_id=s.scan_id, worker_id="w", attempt=1), outcome=Outcome.COMPLETE, result={})
                for s in done
            ]
        )
        again = await store.claim(worker_id="w", limit=6, lease_s=30.0, max_per_target=1)
        assert sorted(str(s.target_key) for s in again) == sorted(str(s.target_key) for s in done)
        conn = await asyncpg.connect(postgres_database_url)
        try:
            assert await conn.fetchval("SELECT to_regclass('target_slots')") is None
            assert await conn.fetchval(ADVISORY_LOCKS_HERE) == 0
        finally:
            await conn.close()
