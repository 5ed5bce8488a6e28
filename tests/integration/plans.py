"""Reading PostgreSQL plans in tests: EXPLAIN ANALYZE in a rolled-back transaction, and what the plan touched."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def explain(conn: asyncpg.Connection[Any], query: str, *args: object) -> dict[str, Any]:
    """EXPLAIN ANALYZE a statement (it really runs) in a transaction that is rolled back; the plan's root."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", *args)
    finally:
        await transaction.rollback()
    plan: dict[str, Any] = json.loads(raw)[0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes, root first."""
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


def pages(plan: dict[str, Any]) -> int:
    """Shared buffers the node (with its children) hit or read."""
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def assert_no_table_scan(plan: dict[str, Any]) -> None:
    scans = [node for node in nodes(plan) if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "scans"]
    assert not scans, f"sequential scan of scans: {scans}"


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {node["Index Name"] for node in nodes(plan) if "Index Name" in node}
