"""``PostgresStore``: the domain operations, each one statement (one round trip, one implicit transaction)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from scanq.exceptions import ScanFinished, ScanNotFound, StoreError, StoreUnavailable, ValidationError
from scanq.ids import is_scan_id
from scanq.models import (
    Actor,
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Page,
    Scan,
    ScanStatus,
    Stats,
    TenantQueue,
)
from scanq.store.base import MAX_PAGE_SIZE, Store, accepted_scan, decode_cursor, encode_cursor
from scanq.store.group_commit import GroupCommit
from scanq.store.postgres import connection, statements
from scanq.store.postgres.accounts import Accounts
from scanq.store.postgres.claims import TARGET_LOCK_STRIPES, CappedClaims
from scanq.store.postgres.connection import SERVER_SETTINGS, Connection, Pool, wrap_errors
from scanq.store.postgres.events import ScanEvents
from scanq.store.postgres.finished import FinishedScans
from scanq.store.postgres.options import PostgresOptions, parse_url
from scanq.store.postgres.rows import (
    claim_order,
    claimed_scan_from_row,
    finish_arrays,
    first_finishes,
    first_submissions,
    held_leases,
    lease_arrays,
    new_scan_arrays,
    queue_from_row,
    scan_from_row,
)
from scanq.store.postgres.schema import durable_settings, migrate
from scanq.store.postgres.wakeup import WorkListener
from scanq.store.postgres.webhooks import Webhooks

logger = logging.getLogger(__name__)

# Largest group commit; more waiting creates go in the next transaction.
GROUP_COMMIT_MAX_SCANS = 1000
# Group commits in flight at once per process; PostgreSQL merges their WAL flushes.
GROUP_COMMIT_IN_FLIGHT = 2
# Fold the count deltas into scan_counts once this many have piled up.
COUNT_FOLD_THRESHOLD = 1000

# Every status, in the order list_tenant reads the ranges of one tenant.
_STATUSES = [str(status) for status in ScanStatus]


class PostgresStore(FinishedScans, Accounts, ScanEvents, Webhooks, Store):
    """The Store on PostgreSQL (asyncpg, a bounded pool); see the package docstring and ``docs/postgres.md``.

    The operations on finished scans (counts, export, retention) come from ``finished.FinishedScans``,
    those on API tokens and tenant limits from ``accounts.Accounts``, reading and pruning the event log
    from ``events.ScanEvents``, and webhook endpoints and deliveries from ``webhooks.Webhooks``. Every
    status transition inserts its events in its own statement (``sql/queries.sql``).

    Args:
        url: ``postgresql://user:password@host:port/database``; the query parameters of
            ``PostgresOptions`` (``min_pool``, ``max_pool``, ``poll_interval_s``) are scanq's, any
            other parameter goes to asyncpg.
        min_pool: overrides the URL's ``min_pool``: connections kept open.
        max_pool: overrides the URL's ``max_pool``: most connections this process opens (plus one
            for ``LISTEN`` in workers).
        poll_interval_s: overrides the URL's ``poll_interval_s``: longest ``wait_for_work`` and
            ``wait_for_events`` sleep without a notification (the fallback poll).
    """

    def __init__(
        self,
        url: str,
        *,
        min_pool: int | None = None,
        max_pool: int | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.url = url
        self.options: PostgresOptions
        self._dsn, self.options = parse_url(url, min_pool=min_pool, max_pool=max_pool, poll_interval_s=poll_interval_s)
        self._server_settings = dict(SERVER_SETTINGS)
        self._pool: Pool | None = None
        self._listener = WorkListener(connect=self._connect)
        self._capped = CappedClaims(self._require_pool)
        self._group: GroupCommit[Created] = GroupCommit(
            self._insert, max_batch=GROUP_COMMIT_MAX_SCANS, in_flight=GROUP_COMMIT_IN_FLIGHT, split_on_error=True
        )
        self.schema_version = 0

    async def open(self) -> None:
        with wrap_errors():
            conn = await self._connect()
            try:
                self._server_settings.update(await durable_settings(conn))
                self.schema_version = await migrate(conn)
            finally:
                await conn.close()
            min_size, max_size = self.options.pool_sizes
            self._pool = await connection.create_pool(
                self._dsn, min_size=min_size, max_size=max_size, server_settings=self._server_settings
            )

    async def aclose(self) -> None:
        await self._group.drain()
        await self._listener.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await connection.close_pool(pool)

    async def ping(self) -> None:
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        await connection.ping(self._pool)

    async def create(self, *, scan: NewScan) -> Created:
        return await self._group.submit(scan)

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        if not scans:
            return []
        return await self._insert(scans)

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        rows = await self._fetch(statements.SELECT_SCAN, scan_id)
        # Another tenant's scan is answered as an unknown one.
        if not rows or (tenant is not None and rows[0]["tenant"] != tenant):
            raise ScanNotFound(scan_id)
        return scan_from_row(rows[0])

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = decode_cursor(cursor) if cursor else None
        # One row more than asked tells whether there is a next page.
        if tenant is not None:
            statuses = _STATUSES if status is None else [str(status)]
            if after:
                rows = await self._fetch(statements.LIST_TENANT_AFTER, limit + 1, tenant, statuses, after)
            else:
                rows = await self._fetch(statements.LIST_TENANT, limit + 1, tenant, statuses)
        elif status is None and after:
            rows = await self._fetch(statements.LIST_ALL_AFTER, limit + 1, after)
        elif status is None:
            rows = await self._fetch(statements.LIST_ALL, limit + 1)
        elif after:
            rows = await self._fetch(statements.LIST_STATUS_AFTER, limit + 1, str(status), after)
        else:
            rows = await self._fetch(statements.LIST_STATUS, limit + 1, str(status))
        scans = [scan_from_row(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(scans=scans, next_cursor=encode_cursor(scans[-1].scan_id) if has_more else None)

    async def stats(self, *, tenant: str | None = None) -> Stats:
        if tenant is None:
            row = (await self._fetch(statements.STATS))[0]
        else:
            row = (await self._fetch(statements.STATS_TENANT, tenant))[0]
        counts = dict.fromkeys(ScanStatus, 0)
        for status, count in row["counts"].items():
            counts[ScanStatus(status)] = int(count)
        await self._fold_when_long(row["deltas"])
        return Stats(counts=counts, oldest_accepted_at=row["oldest_accepted_at"])

    async def tenant_queues(self, *, limit: int = 100) -> list[TenantQueue]:
        if limit <= 0:
            return []
        rows = await self._fetch(statements.TENANT_QUEUES, limit)
        if rows:
            await self._fold_when_long(rows[0]["deltas"])
        return [queue_from_row(row) for row in rows]

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        if limit <= 0:
            return []
        if max_per_target is None:  # one statement, one walk of scans_claimable
            rows = await self._fetch(statements.CLAIM, worker_id, limit, float(lease_s))
        else:
            rows = await self._capped.claim(worker_id, limit, float(lease_s), max_per_target)
        if rows:
            self._listener.events_written()
        # RETURNING has no order; hand scans out in claim order.
        return [claimed_scan_from_row(row) for row in claim_order(rows)]

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        held = held_leases(leases)
        rows = await self._fetch(statements.HEARTBEAT, *lease_arrays(held), float(lease_s)) if held else []
        renewed = {str(row["scan_id"]) for row in rows}
        return HeartbeatResult(
            lost=frozenset(lease.scan_id for lease in leases) - renewed,
            cancel_requested=frozenset(str(row["scan_id"]) for row in rows if row["cancel_requested"]),
        )

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        first = first_finishes(finishes)
        ordered = [first[scan_id] for scan_id in sorted(first)]  # one lock order, as for leases
        applied: set[str] = set()
        if ordered:
            rows = await self._fetch(statements.FINISH, *finish_arrays(ordered))
            applied = {str(row["scan_id"]) for row in rows}
            if applied:
                self._listener.events_written()
        return [fin.lease.scan_id in applied and first.get(fin.lease.scan_id) is fin for fin in finishes]

    async def release(self, *, leases: Sequence[Lease]) -> int:
        held = held_leases(leases)
        if not held:
            return 0
        rows = await self._fetch(statements.RELEASE, *lease_arrays(held))
        released = int(rows[0]["released"])
        if released:
            self._listener.events_written()
        return released

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        rows = await self._fetch(statements.REQUEUE_EXPIRED, limit)
        requeued = int(rows[0]["requeued"])
        if requeued:
            self._listener.events_written()
        # Every worker runs the reaper on a timer: a good moment to keep the count deltas short.
        with contextlib.suppress(StoreError):
            await self._fold_counts()
        return requeued

    async def cancel(self, *, scan_id: str, tenant: str | None = None, by: Actor | None = None) -> Scan:
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        by_id, by_name = (by.token_id, by.token_name) if by is not None else (None, None)
        rows = await self._fetch(statements.CANCEL, scan_id, tenant, by_id, by_name)
        if rows:
            scan = scan_from_row(rows[0])
            if scan.status == ScanStatus.CANCELLED:
                self._listener.events_written()
            return scan
        scan = await self.get(scan_id=scan_id, tenant=tenant)  # raises ScanNotFound
        raise ScanFinished(scan_id, scan.status)

    async def wait_for_work(self, *, timeout_s: float) -> None:
        self._require_pool()
        await self._listener.wait(timeout_s=timeout_s, poll_interval_s=self.options.poll_interval_s)

    async def wait_for_events(self, *, timeout_s: float) -> None:
        self._require_pool()
        await self._listener.wait_for_events(timeout_s=timeout_s, poll_interval_s=self.options.poll_interval_s)

    async def _insert(self, scans: Sequence[NewScan]) -> list[Created]:
        """Insert scans in one statement (one transaction); answer in input order."""
        for scan in scans:
            if not is_scan_id(scan.scan_id):
                raise ValidationError(f"invalid scan id {scan.scan_id!r}")
        try:
            rows = await self._fetch(statements.INSERT_SCANS, *new_scan_arrays(first_submissions(scans)))
        except StoreError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ValidationError("duplicate scan id") from exc.__cause__
            raise
        stored = {str(row["scan_id"]): row for row in rows}
        if stored:
            self._listener.events_written()
        inserted = {
            new.scan_id: accepted_scan(
                new, updated_at=stored[new.scan_id]["updated_at"], available_at=stored[new.scan_id]["available_at"]
            )
            for new in scans
            if new.scan_id in stored
        }
        # An idempotency key is unique per tenant: (tenant, key) → the scan stored under it.
        by_key: dict[tuple[str, str | None], Scan] = {
            (scan.tenant, scan.idempotency_key): scan for scan in inserted.values() if scan.idempotency_key is not None
        }
        missing = {
            (s.tenant, s.idempotency_key)
            for s in scans
            if s.scan_id not in inserted and (s.tenant, s.idempotency_key) not in by_key
        }
        if missing:
            # Keys stored before this statement: ON CONFLICT skipped those rows, read them back.
            tenants = sorted({tenant for tenant, _ in missing})
            keys = sorted({key for _, key in missing if key is not None})
            for row in await self._fetch(statements.SELECT_BY_KEYS, tenants, keys):
                if (row["tenant"], row["idempotency_key"]) in missing:
                    by_key[row["tenant"], row["idempotency_key"]] = scan_from_row(row)
        answers: list[Created] = []
        for new in scans:
            if new.scan_id in inserted:
                answers.append(Created(scan=inserted[new.scan_id], is_new=True))
            elif (new.tenant, new.idempotency_key) in by_key:
                answers.append(Created(scan=by_key[new.tenant, new.idempotency_key], is_new=False))
            else:  # the key's scan vanished between the two statements (deleted): should not happen
                raise StoreError(f"scan with idempotency key {new.idempotency_key!r} not found")
        return answers

    async def _fold_counts(self) -> None:
        await self._fetch(statements.FOLD_COUNTS, statements.COUNT_FOLD_LOCK_KEY)

    async def _fold_when_long(self, deltas: int) -> None:
        if deltas >= COUNT_FOLD_THRESHOLD:
            # Best effort: on a read replica (status service) the fold is refused; the primary folds.
            with contextlib.suppress(StoreError):
                await self._fold_counts()

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await connection.fetch(self._require_pool(), query, *args)

    async def _connect(self) -> Connection:
        return await connection.connect(self._dsn, self._server_settings)

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool


__all__ = [
    "COUNT_FOLD_THRESHOLD",
    "GROUP_COMMIT_IN_FLIGHT",
    "GROUP_COMMIT_MAX_SCANS",
    "TARGET_LOCK_STRIPES",
    "PostgresStore",
]
