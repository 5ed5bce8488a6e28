"""Throughput counts and retention batches read a range of the finished index, never the table.

With millions of finished scans, ``finished_counts`` (``GET /stats/throughput``) and
``prune`` must cost what the window or the batch holds. The tables are filled with
straight SQL (50,000 scans finished over a day on PostgreSQL); the plans must agree.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scanq.store import open_store
from scanq.store.base import RETENTION_ROLE
from scanq.store.postgres import statements as pg
from scanq.store.sqlite import finished as sqlite_finished
from tests.integration.plans import assert_no_table_scan, explain, indexes_used, nodes, pages

FINISHED_ROWS = 50_000
LIVE_ROWS = 2_000
BATCH = 500
# Pages a statement may read: the window or batch, its index entries and their heap rows, not the ~2,000-page table.
PAGE_BUDGET = 200
FILL = """
INSERT INTO scans (scan_id, status, scanner, priority, attempt, max_attempts, created_at, updated_at,
                   available_at, started_at, finished_at, result, history)
SELECT gen_random_uuid(), s.status, 'mock', 0, 1, 3, now(), now(), now(), now(),
       CASE WHEN s.status = 'Accepted' THEN NULL ELSE now() - make_interval(secs => s.i * 86400.0 / $1::int) END,
       '{"ok": true}', '[]'
FROM (SELECT i, CASE WHEN i > $1::int THEN 'Accepted' WHEN i % 10 = 0 THEN 'Error' ELSE 'Complete' END AS status
      FROM generate_series(1, $1::int + $2::int) AS i) AS s
"""


@pytest.fixture
async def filled(postgres_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with open_store(postgres_database_url):
        pass  # migrated
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute(FILL, FINISHED_ROWS, LIVE_ROWS)
        await conn.execute("VACUUM ANALYZE scans")
        await conn.execute(
            "INSERT INTO scanq_leaders VALUES ($1, 'explain', now() + interval '1 hour')", RETENTION_ROLE
        )
        yield conn
    finally:
        await conn.close()


@pytest.mark.slow
async def test_postgres_counts_a_window_from_the_finished_index(filled: asyncpg.Connection[Any]) -> None:
    until = datetime.now(UTC)

    plan = await explain(filled, pg.FINISHED_COUNTS, until - timedelta(minutes=5), until, 10.0)

    assert_no_table_scan(plan)
    assert "scans_finished" in indexes_used(plan)
    assert pages(plan) < PAGE_BUDGET  # about 170 scans finished in those 5 minutes


@pytest.mark.slow
async def test_postgres_prunes_a_batch_from_the_start_of_the_range(filled: asyncpg.Connection[Any]) -> None:
    cutoff = datetime.now(UTC) - timedelta(hours=1)  # 48,000 scans are due: a batch reads 500 of them

    batch = await explain(filled, pg.PRUNE_BATCH, "Complete", cutoff, BATCH)
    delete = await explain(filled, pg.PRUNE, "Complete", cutoff, BATCH, "explain", RETENTION_ROLE)

    for plan in (batch, delete):
        assert_no_table_scan(plan)
        assert "scans_finished" in indexes_used(plan)
    assert batch["Actual Rows"] == BATCH
    limit = next(node for node in nodes(delete) if node["Node Type"] == "Limit")
    assert limit["Actual Rows"] == BATCH
    assert pages(limit) < 3 * BATCH  # picking: index entries and rows of the batch only


@pytest.mark.slow
async def test_postgres_generic_prune_plan_uses_the_finished_index(filled: asyncpg.Connection[Any]) -> None:
    """asyncpg prepares statements; after a few runs PostgreSQL may switch to a generic plan."""
    await filled.execute(f"PREPARE prune_statement AS {pg.PRUNE}")
    await filled.execute("SET plan_cache_mode = force_generic_plan")
    cutoff = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    rows = await filled.fetch(
        f"EXPLAIN (FORMAT JSON) EXECUTE prune_statement('Complete', '{cutoff}', 500, 'explain', '{RETENTION_ROLE}')"
    )
    plan = json.loads(rows[0][0])[0]["Plan"]
    assert_no_table_scan(plan)
    assert "scans_finished" in indexes_used(plan)


async def test_sqlite_counts_and_batches_search_the_finished_index(tmp_path: Path) -> None:
    path = tmp_path / "scanq.db"
    async with open_store(f"sqlite:///{path}"):
        pass  # migrated
    conn = sqlite3.connect(path)
    try:
        for sql in (sqlite_finished.FINISHED_COUNTS, sqlite_finished.PRUNE_BATCH):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", _SQLITE_PARAMS)]
            assert any(line.startswith("SEARCH scans USING") and "scans_finished" in line for line in plan), plan
        export = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sqlite_finished.EXPORT}", _SQLITE_PARAMS)]
        assert not any("TEMP B-TREE" in line for line in export), export  # key order from the index, no sort
    finally:
        conn.close()


_SQLITE_PARAMS = {
    "since": 0.0,
    "until": 1.0,
    "step": 1.0,
    "status": "Complete",
    "before": 1.0,
    "limit": 10,
    "after": "",
    "statuses": '["Complete"]',
}
