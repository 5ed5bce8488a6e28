"""A page of one status reads few pages even when the newest scans are all in other statuses.

A live queue's newest scans are Accepted and Running, its older ones Complete. Written as one
``WHERE status = … ORDER BY scan_id DESC LIMIT …``, PostgreSQL walked ``scans_pkey`` backwards
and filtered, stepping over every newer scan (30,000 in the status bench at 1M scans: 8 to 16 ms
a page). ``list_status`` and ``list_status_after`` pick the page's ids from ``scans_by_status``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scanq.store.postgres.statements import LIST_STATUS, LIST_STATUS_AFTER
from tests.integration.plans import assert_no_table_scan, explain, indexes_used, nodes, pages

OLDER_COMPLETE = 20_000
NEWER_ACCEPTED = 10_000
PAGE = 51
# A page costs a few pages per row (an index probe and the row); stepping over the newer Accepted
# scans, as the pkey walk did, reads some 250 and filters out 10,000 rows.
PAGE_BUDGET = 4 * PAGE
# Ids in insertion order (UUIDv7 are time-ordered): the Accepted ones are the newest.
FILL = """
INSERT INTO scans (scan_id, status, scanner, priority, attempt, max_attempts, created_at, updated_at,
                   available_at, finished_at, result, history)
SELECT lpad(to_hex(i), 32, '0')::uuid, CASE WHEN i <= $1::int THEN 'Complete' ELSE 'Accepted' END, 'mock',
       0, 1, 3, now(), now(), now(), CASE WHEN i <= $1::int THEN now() END,
       CASE WHEN i <= $1::int THEN '{"ok": true}'::jsonb END, '[]'
FROM generate_series(1, $1::int + $2::int) AS i
"""
MIDDLE = "00000000-0000-0000-0000-000000002710"  # i = 10,000: a cursor among the Complete scans


def assert_reads_only_the_page(plan: dict[str, Any]) -> None:
    assert "scans_by_status" in indexes_used(plan)
    assert plan["Actual Rows"] == PAGE
    assert all(node.get("Rows Removed by Filter", 0) == 0 for node in nodes(plan))
    assert pages(plan) < PAGE_BUDGET


@pytest.fixture
async def skewed(postgres_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute(FILL, OLDER_COMPLETE, NEWER_ACCEPTED)
        await conn.execute("VACUUM ANALYZE scans")
        yield conn
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_page_of_an_old_status_does_not_step_over_the_newer_scans(skewed: asyncpg.Connection[Any]) -> None:
    for query, args in ((LIST_STATUS, (PAGE, "Complete")), (LIST_STATUS_AFTER, (PAGE, "Complete", MIDDLE))):
        plan = await explain(skewed, query, *args)
        assert_no_table_scan(plan)
        assert_reads_only_the_page(plan)


@pytest.mark.slow
async def test_the_generic_plans_pick_the_page_from_the_status_index(skewed: asyncpg.Connection[Any]) -> None:
    """asyncpg prepares statements; after a few runs PostgreSQL may switch to a generic plan."""
    await skewed.execute("SET plan_cache_mode = force_generic_plan")
    await skewed.execute(f"PREPARE page_statement AS {LIST_STATUS}")
    await skewed.execute(f"PREPARE after_statement AS {LIST_STATUS_AFTER}")
    for execute in (f"page_statement({PAGE}, 'Complete')", f"after_statement({PAGE}, 'Complete', '{MIDDLE}')"):
        raw = await skewed.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {execute}")
        assert_reads_only_the_page(json.loads(raw)[0]["Plan"])


async def test_pages_of_one_status_are_its_newest_scans_in_order(skewed: asyncpg.Connection[Any]) -> None:
    first = await skewed.fetch(LIST_STATUS, PAGE, "Complete")
    expected = [f"{i:032x}" for i in range(OLDER_COMPLETE, OLDER_COMPLETE - PAGE, -1)]
    assert [row["scan_id"].hex for row in first] == expected
    after = await skewed.fetch(LIST_STATUS_AFTER, PAGE, "Complete", first[-1]["scan_id"])
    assert [row["scan_id"].hex for row in after] == [
        f"{i:032x}" for i in range(OLDER_COMPLETE - PAGE, OLDER_COMPLETE - 2 * PAGE, -1)
    ]
    assert {row["status"] for row in first + after} == {"Complete"}
