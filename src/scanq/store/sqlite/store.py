"""The embedded backend: one SQLite file in WAL mode, shared by every scanq process on a machine.

Threads, so the event loop never waits on disk: one writer (``writer.Writer``,
group commit), a few readers (``readers.Readers``) and one ``PRAGMA
data_version`` watcher for both waits (``wakeup.DataVersionWatcher``).
This module holds the domain operations; each write is a function of
``(connection, now)`` the writer runs inside its batch transaction.

Timestamps are REAL epoch seconds from this process's clock (history entries
keep the exact same value: ``json(repr(now))`` keeps all 17 digits, where a
bound REAL would be printed with 15). ``stats`` reads a counts table kept by
triggers (five rows per tenant), so it costs the same at 1M rows as at 10;
triggers also write each transition's event (rule 10, ``events``).
Fair share (rule 9): the writer gives each new scan its fair key (``writer``), the
claim walks the index in that order; ``max_per_target`` picks in ``claims.claim_capped``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from scanq.exceptions import ScanFinished, ScanNotFound, StoreError, StoreUnavailable
from scanq.models import (
    Actor,
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Outcome,
    Page,
    Scan,
    ScanStatus,
    Stats,
)
from scanq.store.base import MAX_PAGE_SIZE, Store, decode_cursor, encode_cursor
from scanq.store.sqlite.accounts import Accounts
from scanq.store.sqlite.claims import claim_capped, claim_order
from scanq.store.sqlite.events import ScanEvents
from scanq.store.sqlite.finished import FinishedScans
from scanq.store.sqlite.options import parse_url
from scanq.store.sqlite.readers import Readers
from scanq.store.sqlite.rows import (
    accepted_created,
    actor_json,
    finishes_json,
    insert_params,
    insert_row,
    leases_json,
    scan_from_row,
    to_datetime,
)
from scanq.store.sqlite.schema import check_sqlite_version
from scanq.store.sqlite.statements import (
    CANCEL,
    CLAIM,
    COUNTS,
    COUNTS_OF_TENANT,
    FINISH,
    HEARTBEAT,
    LIST_ALL,
    LIST_BY_STATUS,
    LIST_BY_STATUS_OF_TENANT,
    LIST_OF_TENANT,
    OLDEST_ACCEPTED,
    OLDEST_ACCEPTED_OF_TENANT,
    RELEASE,
    REQUEUE_EXPIRED,
    SELECT_SCAN,
    SELECT_STATUS,
)
from scanq.store.sqlite.wakeup import DataVersionWatcher
from scanq.store.sqlite.webhooks import Webhooks
from scanq.store.sqlite.writer import Apply, Writer

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Greater than every scan id: the first page of a keyset list.
_AFTER_EVERY_ID = "~"


class SQLiteStore(FinishedScans, Accounts, ScanEvents, Webhooks, Store):
    """The embedded store: a SQLite file in WAL mode; safe for many processes on one machine.

    The operations on finished scans (counts, export, retention) come from ``finished.FinishedScans``,
    API tokens and tenant limits from ``accounts.Accounts``, the event log from ``events.ScanEvents``
    and webhook endpoints and deliveries from ``webhooks.Webhooks``.

    Args:
        url: ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``; the parent directory is created.
            Options may go in its query string (``?busy_timeout_s=5``): see ``SQLiteOptions``.
        wake_interval_s: overrides the URL's ``wake_interval_s``.
        busy_timeout_s: overrides the URL's ``busy_timeout_s``.
        readers: overrides the URL's ``readers``.
    """

    def __init__(
        self,
        url: str,
        *,
        wake_interval_s: float | None = None,
        busy_timeout_s: float | None = None,
        readers: int | None = None,
    ) -> None:
        self.url = url
        self.path, self.options = parse_url(
            url, wake_interval_s=wake_interval_s, busy_timeout_s=busy_timeout_s, readers=readers
        )
        self._writer: Writer | None = None
        self._readers: Readers | None = None
        self._watcher: DataVersionWatcher | None = None
        self._is_open = False
        self._is_closing = False

    @property
    def transactions(self) -> int:
        """Write transactions committed since open; fewer than the writes asked for is group commit at work."""
        return 0 if self._writer is None else self._writer.transactions

    # -- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._is_open:
            return
        check_sqlite_version()
        self._is_closing = False
        path, busy_timeout_s = self.path, self.options.busy_timeout_s
        watcher = DataVersionWatcher(path, busy_timeout_s=busy_timeout_s, interval_s=self.options.wake_interval_s)
        writer = Writer(
            path,
            busy_timeout_s=busy_timeout_s,
            on_wake=watcher.wake_all,
            on_events=watcher.report_events_head,
            is_event_wanted=watcher.is_event_wanted.is_set,
        )
        await writer.start()
        self._writer, self._watcher = writer, watcher
        self._readers = Readers(path, busy_timeout_s=busy_timeout_s, count=self.options.readers)
        watcher.start()
        self._is_open = True
        logger.debug("SQLite store open at %s", self.path)

    async def aclose(self) -> None:
        if not self._is_open or self._is_closing:
            return
        self._is_closing = True
        assert self._writer is not None and self._readers is not None and self._watcher is not None
        await asyncio.gather(self._writer.close(), self._watcher.close())
        await self._readers.close()
        self._is_open = False
        logger.debug("SQLite store closed at %s", self.path)

    def _open_writer(self) -> Writer:
        if not self._is_open or self._is_closing or self._writer is None:
            raise StoreError("the SQLite store is not open")
        return self._writer

    async def _write(self, apply: Apply[T]) -> T:
        return await self._open_writer().submit_write(apply)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if not self._is_open or self._is_closing or self._readers is None:
            raise StoreError("the SQLite store is not open")
        return await self._readers.submit(query)

    async def wait_for_work(self, *, timeout_s: float) -> None:
        if not self._is_open or self._is_closing or self._watcher is None:
            return
        await self._watcher.wait(timeout_s=timeout_s)

    # -- operations ---------------------------------------------------------------------------------

    async def pragmas(self) -> dict[str, Any]:
        """The settings the writing connection runs with (diagnostics: journal mode, sync level, schema version)."""

        def apply(conn: sqlite3.Connection, now: float) -> tuple[dict[str, Any], bool]:
            names = ("journal_mode", "synchronous", "user_version", "busy_timeout", "temp_store")
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}, False

        return await self._write(apply)

    async def ping(self) -> None:
        def query(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1").fetchone()

        try:
            await self._read(query)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def create(self, *, scan: NewScan) -> Created:
        # create_many's steps for one scan, without its lists: this is every POST /scans.
        answer = await self._open_writer().submit_create((scan,), insert_row(scan))
        if type(answer) is datetime:
            return accepted_created(scan, answer)
        assert isinstance(answer, list)
        return answer[0]

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        writer = self._open_writer()
        if not scans:
            return []
        answer = await writer.submit_create(scans, insert_params(scans))
        if isinstance(answer, datetime):
            return [accepted_created(new, answer) for new in scans]
        return answer

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        row = await self._read(lambda conn: conn.execute(SELECT_SCAN, (scan_id,)).fetchone())
        if row is None:
            raise ScanNotFound(scan_id)
        scan = scan_from_row(row)
        if tenant is not None and scan.tenant != tenant:
            raise ScanNotFound(scan_id)  # another tenant's scan is an unknown id
        return scan

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = decode_cursor(cursor) if cursor else _AFTER_EVERY_ID
        sql, params = (
            (LIST_ALL, [after, limit + 1]) if status is None else (LIST_BY_STATUS, [str(status), after, limit + 1])
        )
        if tenant is not None:
            sql = LIST_OF_TENANT if status is None else LIST_BY_STATUS_OF_TENANT
            params.insert(0, tenant)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        scans = [scan_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(scans[-1].scan_id) if len(rows) > limit else None
        return Page(scans=scans, next_cursor=next_cursor)

    async def stats(self, *, tenant: str | None = None) -> Stats:
        def query(conn: sqlite3.Connection) -> tuple[list[tuple[str, int]], Any]:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                if tenant is None:
                    counts = conn.execute(COUNTS).fetchall()
                    oldest = conn.execute(OLDEST_ACCEPTED).fetchone()
                else:
                    counts = conn.execute(COUNTS_OF_TENANT, (tenant,)).fetchall()
                    oldest = conn.execute(OLDEST_ACCEPTED_OF_TENANT, (tenant,)).fetchone()
            finally:
                conn.execute("COMMIT")
            return counts, oldest

        counts, oldest = await self._read(query)
        by_status = dict.fromkeys(ScanStatus, 0)
        for status, n in counts:
            by_status[ScanStatus(status)] = n
        oldest_at = None if oldest is None else oldest[0]  # no row (one tenant) or NULL (every tenant): none
        return Stats(counts=by_status, oldest_accepted_at=None if oldest_at is None else to_datetime(oldest_at))

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        if limit <= 0:
            return []

        def apply(conn: sqlite3.Connection, now: float) -> tuple[list[Scan], bool]:
            params = {"worker": worker_id, "expires": now + lease_s, "now": now, "now_json": repr(now), "limit": limit}
            if max_per_target is None:
                rows = conn.execute(CLAIM, params).fetchall()  # one statement: the fast path
            else:
                rows = claim_capped(conn, params, limit=limit, cap=max_per_target)
            rows.sort(key=claim_order)  # RETURNING has no order
            return [scan_from_row(row) for row in rows], False

        return await self._write(apply)

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        payload = leases_json(leases)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[list[tuple[str, int]], bool]:
            params = {"leases": payload, "expires": now + lease_s, "now": now}
            return conn.execute(HEARTBEAT, params).fetchall(), False

        rows = await self._write(apply)
        held = {scan_id for scan_id, _ in rows}
        return HeartbeatResult(
            lost=frozenset(lease.scan_id for lease in leases if lease.scan_id not in held),
            cancel_requested=frozenset(scan_id for scan_id, is_cancel in rows if is_cancel),
        )

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        if not finishes:
            return []
        # One outcome per scan per call: a repeat in the same batch is a second finish, refused.
        firsts: dict[str, int] = {}
        for index, fin in enumerate(finishes):
            firsts.setdefault(fin.lease.scan_id, index)
        payload = finishes_json([finishes[index] for index in firsts.values()])
        is_retry = any(fin.outcome == Outcome.RETRY for fin in finishes)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[set[str], bool]:
            rows = conn.execute(FINISH, {"finishes": payload, "now": now, "now_json": repr(now)}).fetchall()
            return {row[0] for row in rows}, is_retry and bool(rows)

        applied = await self._write(apply)
        return [
            firsts[fin.lease.scan_id] == index and fin.lease.scan_id in applied for index, fin in enumerate(finishes)
        ]

    async def release(self, *, leases: Sequence[Lease]) -> int:
        if not leases:
            return 0
        payload = leases_json(leases)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            rows = conn.execute(RELEASE, {"leases": payload, "now": now, "now_json": repr(now)}).fetchall()
            return len(rows), any(status == ScanStatus.ACCEPTED for (status,) in rows)

        return await self._write(apply)

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            rows = conn.execute(REQUEUE_EXPIRED, {"now": now, "now_json": repr(now), "limit": limit}).fetchall()
            return len(rows), any(status == ScanStatus.ACCEPTED for (status,) in rows)

        return await self._write(apply)

    async def cancel(self, *, scan_id: str, tenant: str | None = None, by: Actor | None = None) -> Scan:
        params = {"scan_id": scan_id, "tenant": tenant, "by": actor_json(by)}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[Scan, bool]:
            row = conn.execute(CANCEL, {**params, "now": now}).fetchone()
            if row is None:
                found = conn.execute(SELECT_STATUS, (scan_id,)).fetchone()
                if found is None or (tenant is not None and found[1] != tenant):
                    raise ScanNotFound(scan_id)
                raise ScanFinished(scan_id, found[0])
            return scan_from_row(row), False

        return await self._write(apply)


__all__ = ["SQLiteStore"]
