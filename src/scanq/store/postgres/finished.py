"""PostgreSQL: the operations on finished scans (throughput counts, export pages, the retention role and prune).

``FinishedScans`` is mixed into ``PostgresStore``, whose ``store.py`` keeps the
live queue's operations; the statements are in ``sql/queries.sql``. Counts and
prune batches are ranges of ``scans_finished`` (status, finished_at, scan_id), of one tenant
when ``tenant`` is given (its rows picked out of those ranges);
a prune deletes one batch per statement (one short transaction, fenced by the
retention role's row) and appends its count delta, so ``stats`` stays exact.
Plain deletes rather than partitions: ``docs/postgres.md`` has the measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scanq.ids import is_scan_id
from scanq.models import Scan, ScanStatus
from scanq.store.base import (
    MAX_PAGE_SIZE,
    RETENTION_ROLE,
    check_after,
    check_finished_status,
    count_steps,
    finished_buckets,
)
from scanq.store.postgres import statements
from scanq.store.postgres.rows import scan_from_row

if TYPE_CHECKING:
    import asyncpg

# Before every scan id: the first page of an export.
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


class FinishedScans:
    """The finished-scan operations of the ``Store`` contract (see ``store.base``), on PostgreSQL."""

    if TYPE_CHECKING:

        async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def finished_counts(
        self, *, since: datetime, until: datetime, step_s: float, tenant: str | None = None
    ) -> list[tuple[datetime, dict[ScanStatus, int]]]:
        steps = count_steps(since=since, until=until, step_s=step_s)
        if steps == 0:
            return []
        if tenant is None:  # index-only: scans_finished holds no tenant
            rows = await self._fetch(statements.FINISHED_COUNTS, since, until, float(step_s))
        else:
            rows = await self._fetch(statements.FINISHED_COUNTS_TENANT, since, until, float(step_s), tenant)
        counts = [(row["step"], row["status"], row["n"]) for row in rows]
        return finished_buckets(since=since, step_s=step_s, steps=steps, counts=counts)

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
        statuses = [str(s) for s in check_finished_status(status)]
        after = check_after(after) or _NIL_UUID
        rows = await self._fetch(
            statements.EXPORT_SCANS, after, statuses, since, until, max(1, min(limit, MAX_PAGE_SIZE)), tenant
        )
        return [scan_from_row(row) for row in rows]

    async def lead(self, *, role: str, owner: str, term_s: float) -> bool:
        return bool(await self._fetch(statements.LEAD, role, owner, float(term_s)))

    async def resign(self, *, role: str, owner: str) -> None:
        await self._fetch(statements.RESIGN, role, owner)

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
        args: list[Any] = [str(status), finished_before, max(1, min(limit, MAX_PAGE_SIZE))]
        named = None if scan_ids is None else [scan_id for scan_id in scan_ids if is_scan_id(scan_id)]
        held = [owner, RETENTION_ROLE]
        if named is not None:  # by key: the tenant is a filter (NULL: any)
            query = statements.PRUNE_NAMED if dry_run else statements.PRUNE_NAMED_DELETE
            rows = await self._fetch(query, *args, *([] if dry_run else held), named, tenant)
        elif tenant is not None:
            query = statements.PRUNE_BATCH_TENANT if dry_run else statements.PRUNE_TENANT
            rows = await self._fetch(query, *args, *([] if dry_run else held), tenant)
        else:
            query = statements.PRUNE_BATCH if dry_run else statements.PRUNE
            rows = await self._fetch(query, *args, *([] if dry_run else held))
        scans = [scan_from_row(row) for row in rows]
        scans.sort(key=lambda scan: (scan.finished_at, scan.scan_id))  # RETURNING has no order
        return scans


__all__ = ["FinishedScans"]
