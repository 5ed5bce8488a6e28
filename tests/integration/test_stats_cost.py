"""Queue depth and oldest-Accepted age (``Store.stats``, what /metrics and /stats read) never scan the scans table.

With millions of finished scans a full-table count per scrape would melt the
database, so each backend keeps counts elsewhere and finds the oldest
Accepted scan through an index. The query planners must agree.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.store import open_store
from scanq.store import postgres as postgres_store
from scanq.store.sqlite import statements as sqlite_store

# A plan line that reads every row of ``scans`` (not the small counter tables, not an index search).
SQLITE_FULL_SCAN = re.compile(r"^SCAN scans\b(?! USING (COVERING )?INDEX)")
SCANS = 40


TENANTS = ("acme", "globex")


def new_scans(count: int) -> list[NewScan]:
    return [
        NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), tenant=TENANTS[i % len(TENANTS)])
        for i in range(count)
    ]


async def fill(url: str) -> None:
    """Some finished and some waiting scans of two tenants, so the counts are not trivially empty."""
    async with open_store(url) as store:
        await store.create_many(scans=new_scans(SCANS))
        claimed = await store.claim(worker_id="w", limit=SCANS // 2, lease_s=30.0)
        assert len(claimed) == SCANS // 2
        for scan in claimed[:5]:
            await store.cancel(scan_id=scan.scan_id)
        stats = await store.stats()
        assert stats.counts[ScanStatus.ACCEPTED] == SCANS // 2
        assert stats.oldest_accepted_at is not None


def sqlite_plan(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()


async def test_sqlite_stats_read_the_counts_table_and_an_index(tmp_path: Path) -> None:
    path = tmp_path / "scanq.db"
    await fill(f"sqlite:///{path}")
    for sql in (sqlite_store.COUNTS, sqlite_store.OLDEST_ACCEPTED):
        plan = sqlite_plan(path, sql)
        assert plan, sql
        assert not [line for line in plan if SQLITE_FULL_SCAN.match(line)], (sql, plan)
    assert any("scan_counts" in line for line in sqlite_plan(path, sqlite_store.COUNTS))
    assert any("INDEX" in line for line in sqlite_plan(path, sqlite_store.OLDEST_ACCEPTED))


async def test_sqlite_stats_of_one_tenant_read_its_counts_and_an_index(tmp_path: Path) -> None:
    path = tmp_path / "scanq.db"
    await fill(f"sqlite:///{path}")
    for sql in (sqlite_store.COUNTS_OF_TENANT, sqlite_store.OLDEST_ACCEPTED_OF_TENANT):
        plan = sqlite_plan(path, sql, ("acme",))
        assert plan, sql
        assert not [line for line in plan if SQLITE_FULL_SCAN.match(line)], (sql, plan)
    assert any("scan_counts" in line for line in sqlite_plan(path, sqlite_store.COUNTS_OF_TENANT, ("acme",)))
    async with open_store(f"sqlite:///{path}") as store:
        each = [await store.stats(tenant=tenant) for tenant in TENANTS]
        every = await store.stats()
    assert {s: sum(t.counts[s] for t in each) for s in ScanStatus} == dict(every.counts)


def test_the_sqlite_check_catches_a_full_count(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE scans (scan_id TEXT PRIMARY KEY, status TEXT)")
    conn.close()
    plan = sqlite_plan(path, "SELECT status, count(*) FROM scans GROUP BY status")
    assert [line for line in plan if SQLITE_FULL_SCAN.match(line)]


def scans_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan tree that reads the ``scans`` table."""
    found = [plan] if plan.get("Relation Name") == "scans" else []
    for child in plan.get("Plans", []):
        found.extend(scans_nodes(child))
    return found


async def rows_read_from_scans(conn: asyncpg.Connection, sql: str) -> list[tuple[str, int]]:
    """(node type, actual rows) for each node of ``sql``'s executed plan that reads ``scans``."""
    answer = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
    plan = (json.loads(answer) if isinstance(answer, str) else answer)[0]["Plan"]
    return [(node["Node Type"], int(node["Actual Rows"])) for node in scans_nodes(plan)]


@pytest.mark.slow
async def test_postgres_stats_read_at_most_one_row_of_scans(postgres_database_url: str) -> None:
    await fill(postgres_database_url)
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute("ANALYZE")
        # Tiny tables make a sequential scan the cheapest plan; forbid it to see the plan a big table gets.
        await conn.execute("SET enable_seqscan = off")
        nodes = await rows_read_from_scans(conn, postgres_store.STATS)
        assert nodes, "the stats query no longer reads scans at all: update this test"
        for node_type, rows in nodes:
            assert node_type in ("Index Scan", "Index Only Scan") and rows <= 1, nodes
        nodes = await rows_read_from_scans(conn, postgres_store.STATS_TENANT.replace("$1", "'acme'"))
        assert nodes, "the tenant stats query no longer reads scans at all: update this test"
        for node_type, rows in nodes:
            assert node_type in ("Index Scan", "Index Only Scan") and rows <= 1, nodes
        # The check can fail: a plain count reads every row.
        assert max(rows for _, rows in await rows_read_from_scans(conn, "SELECT count(*) FROM scans")) == SCANS
    finally:
        await conn.close()
