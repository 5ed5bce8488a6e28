"""SQLite: the operations on finished scans (throughput counts, export pages, the retention role and prune).

``FinishedScans`` is mixed into ``SQLiteStore``, whose ``store.py`` keeps the live
queue's operations. Counts and prune batches are ranges of ``scans_finished``
(status, finished_at, scan_id), partial on ``finished_at IS NOT NULL``: a
``finished_at`` comparison in the query implies the predicate, and ``INDEXED BY``
keeps the plan off the table whatever ANALYZE says. Export pages walk the primary
key (key order at constant memory), or one tenant's range of ``scans_by_tenant``
(tenant, scan_id). Deleting keeps ``scan_counts`` exact through its delete trigger.
A tenant filter on counts and prune checks each row of the range: their cost stays
bounded by the window or the batch's range, not by the table.

No ``incremental_vacuum``: the pages a prune frees go to the file's freelist and
the next inserts reuse them, so under retention the file levels off at its high
mark instead of growing (docs/operations.md says how to shrink it once).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from scanq.models import Scan, ScanStatus
from scanq.store.base import (
    MAX_PAGE_SIZE,
    RETENTION_ROLE,
    check_after,
    check_finished_status,
    count_steps,
    finished_buckets,
)
from scanq.store.sqlite.rows import scan_from_row
from scanq.store.sqlite.statements import COLUMNS

if TYPE_CHECKING:
    from scanq.store.sqlite.writer import Apply

T = TypeVar("T")

# Open bounds of an export window, as REAL epochs.
_NO_SINCE = float("-inf")
_NO_UNTIL = float("inf")
# Before every scan id: the first page of an export.
_BEFORE_EVERY_ID = ""

FINISHED_COUNTS = """
SELECT CAST((finished_at - :since) / :step AS INTEGER) AS step, status, count(*)
FROM scans INDEXED BY scans_finished
WHERE status IN ('Complete', 'Error', 'Cancelled') AND finished_at >= :since AND finished_at < :until
GROUP BY step, status
"""
EXPORT = f"""
SELECT {COLUMNS} FROM scans INDEXED BY sqlite_autoindex_scans_1
WHERE scan_id > :after AND status IN (SELECT value FROM json_each(:statuses))
    AND finished_at >= :since AND finished_at < :until
ORDER BY scan_id LIMIT :limit
"""
# The next batch of retention: the first rows of one status's range, stopping at the cutoff.
PRUNE_BATCH = f"""
SELECT {COLUMNS} FROM scans INDEXED BY scans_finished
WHERE status = :status AND finished_at < :before
ORDER BY finished_at, scan_id LIMIT :limit
"""
# The same rule, for a batch named by id (looked up by key, not by walking the range).
PRUNE_NAMED = f"""
SELECT {COLUMNS} FROM scans INDEXED BY sqlite_autoindex_scans_1
WHERE scan_id IN (SELECT value FROM json_each(:ids)) AND status = :status AND finished_at < :before
ORDER BY finished_at, scan_id LIMIT :limit
"""
DELETE = "DELETE FROM scans WHERE scan_id IN (SELECT value FROM json_each(:ids))"
IS_LEADER = "SELECT 1 FROM scanq_leaders WHERE role = :role AND owner = :owner AND expires_at > :now"
LEAD = """
INSERT INTO scanq_leaders (role, owner, expires_at) VALUES (:role, :owner, :expires)
ON CONFLICT (role) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE scanq_leaders.owner = excluded.owner OR scanq_leaders.expires_at <= :now
RETURNING owner
"""
RESIGN = "DELETE FROM scanq_leaders WHERE role = :role AND owner = :owner"


def _of_tenant(sql: str) -> str:
    """``sql`` limited to the scans of ``:tenant``: its one top-level WHERE clause gains the condition."""
    head, tail = sql.split("\nWHERE ", 1)
    return f"{head}\nWHERE tenant = :tenant AND {tail}"


FINISHED_COUNTS_OF_TENANT = _of_tenant(FINISHED_COUNTS)
# One tenant's export walks its range of (tenant, scan_id): key order still, without the others' rows.
EXPORT_OF_TENANT = f"""
SELECT {COLUMNS} FROM scans INDEXED BY scans_by_tenant
WHERE tenant = :tenant AND scan_id > :after AND status IN (SELECT value FROM json_each(:statuses))
    AND finished_at >= :since AND finished_at < :until
ORDER BY scan_id LIMIT :limit
"""
PRUNE_BATCH_OF_TENANT = _of_tenant(PRUNE_BATCH)
PRUNE_NAMED_OF_TENANT = _of_tenant(PRUNE_NAMED)


class FinishedScans:
    """The finished-scan operations of the ``Store`` contract (see ``store.base``), on SQLite."""

    if TYPE_CHECKING:

        async def _write(self, apply: Apply[T]) -> T: ...

        async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    async def finished_counts(
        self, *, since: datetime, until: datetime, step_s: float, tenant: str | None = None
    ) -> list[tuple[datetime, dict[ScanStatus, int]]]:
        steps = count_steps(since=since, until=until, step_s=step_s)
        if steps == 0:
            return []
        params: dict[str, Any] = {"since": since.timestamp(), "until": until.timestamp(), "step": step_s}
        sql = FINISHED_COUNTS
        if tenant is not None:
            sql, params["tenant"] = FINISHED_COUNTS_OF_TENANT, tenant
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return finished_buckets(since=since, step_s=step_s, steps=steps, counts=rows)

    async def export_scans(
        self,
        *,
        status: ScanStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        tenant: str | None = None,
    ) -> list[Scan]:
        params: dict[str, Any] = {
            "statuses": msgspec.json.encode([str(s) for s in check_finished_status(status)]).decode(),
            "after": check_after(after) or _BEFORE_EVERY_ID,
            "since": _NO_SINCE if since is None else since.timestamp(),
            "until": _NO_UNTIL if until is None else until.timestamp(),
            "limit": max(1, min(limit, MAX_PAGE_SIZE)),
        }
        sql = EXPORT
        if tenant is not None:
            sql, params["tenant"] = EXPORT_OF_TENANT, tenant
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [scan_from_row(row) for row in rows]

    async def lead(self, *, role: str, owner: str, term_s: float) -> bool:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[bool, bool]:
            params = {"role": role, "owner": owner, "expires": now + term_s, "now": now}
            return conn.execute(LEAD, params).fetchone() is not None, False

        return await self._write(apply)

    async def resign(self, *, role: str, owner: str) -> None:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[None, bool]:
            conn.execute(RESIGN, {"role": role, "owner": owner})
            return None, False

        await self._write(apply)

    async def prune(
        self,
        *,
        status: ScanStatus,
        finished_before: datetime,
        limit: int,
        owner: str,
        dry_run: bool = False,
        scan_ids: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> list[Scan]:
        check_finished_status(status)
        params: dict[str, Any] = {
            "status": str(status),
            "before": finished_before.timestamp(),
            "limit": max(1, min(limit, MAX_PAGE_SIZE)),
        }
        select = PRUNE_BATCH if tenant is None else PRUNE_BATCH_OF_TENANT
        if scan_ids is not None:
            select = PRUNE_NAMED if tenant is None else PRUNE_NAMED_OF_TENANT
            params["ids"] = msgspec.json.encode(list(scan_ids)).decode()
        if tenant is not None:
            params["tenant"] = tenant
        if dry_run:
            rows = await self._read(lambda conn: conn.execute(select, params).fetchall())
            return [scan_from_row(row) for row in rows]

        def apply(conn: sqlite3.Connection, now: float) -> tuple[list[Any], bool]:
            # In the writer's transaction: the role cannot change hands between this check and the delete.
            if conn.execute(IS_LEADER, {"role": RETENTION_ROLE, "owner": owner, "now": now}).fetchone() is None:
                return [], False
            rows = conn.execute(select, params).fetchall()
            if rows:
                conn.execute(DELETE, {"ids": msgspec.json.encode([row[0] for row in rows]).decode()})
            return rows, False

        return [scan_from_row(row) for row in await self._write(apply)]


__all__ = ["FinishedScans"]
