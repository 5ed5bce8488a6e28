"""SQLite: the scan event log (``Store`` rule 10): reading it, waiting for it, pruning it.

``ScanEvents`` is mixed into ``SQLiteStore``. The events themselves are written by the
triggers of ``schema.MIGRATION_5`` inside each transition's own statement; this module
only reads and prunes them. An event id is the decimal ``seq`` of its row: one writer
holds the file's write lock at a time (every process), so ``seq`` order is commit order
and every committed event is settled: a reader that continues after the last id it read
never misses one. Reads go to the reader threads; the prune joins the writer's batches.

``wait_for_events`` sleeps on the ``PRAGMA data_version`` watcher (``wakeup``), which
the writer also tells the log's head after each of its own batches. Each read notes,
for the calling task (a ``ContextVar``), the head it has read up to, so a wait that
starts after an event the caller has not read returns at once instead of sleeping.
"""

from __future__ import annotations

import contextvars
import functools
import re
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from scanq.exceptions import ValidationError
from scanq.models import ScanEvent, ScanStatus
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE
from scanq.store.sqlite.finished import IS_LEADER
from scanq.store.sqlite.rows import to_datetime
from scanq.store.sqlite.statements import EVENTS_HEAD

if TYPE_CHECKING:
    from scanq.store.sqlite.wakeup import DataVersionWatcher
    from scanq.store.sqlite.writer import Apply

T = TypeVar("T")

EVENT_COLUMNS = "seq, scan_id, tenant, status, attempt, at"
# The dispatch cursor: every event at or before it has been fanned out to deliveries (0: none yet).
DISPATCH_CURSOR = "SELECT coalesce((SELECT seq FROM webhook_cursor WHERE one = 1), 0)"
# The oldest events (seq order) up to the dispatch cursor, as long as they are older than :before:
# a prefix of the log, so a pass stops at the first event it keeps instead of walking every later one.
PRUNE_EVENTS = """
WITH oldest AS (
    SELECT seq, at FROM scan_events WHERE seq <= :cursor ORDER BY seq LIMIT :limit),
kept AS (SELECT coalesce(min(seq), :cursor + 1) AS seq FROM oldest WHERE at >= :before)
DELETE FROM scan_events WHERE seq IN (SELECT seq FROM oldest WHERE seq < (SELECT seq FROM kept))
RETURNING seq
"""

_EVENT_ID = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_SEQ = 2**63 - 1  # SQLite's largest rowid

# Per task: the log's head as far as the task's last read went, and the file it read. ``wait_for_events``
# compares it with the newest head the watcher reported, so an event that settled between the read and
# the wait wakes it. Keyed by file: two stores on one file share one log, a read of another file does not count.
_SEEN_HEAD: contextvars.ContextVar[tuple[Path, int] | None] = contextvars.ContextVar("scanq_sqlite_seen", default=None)


@functools.lru_cache(maxsize=16)
def read_events_sql(*, has_scan: bool, has_tenant: bool, has_statuses: bool) -> str:
    """The page of events after ``:after``: a range of the scan's events, or of the whole log.

    A tenant's events are not indexed: its reads walk the log on from ``:after`` (a live stream's
    position is recent), checking each row.
    """
    where = ["seq > :after"]
    source = "scan_events"
    if has_scan:
        source, where = "scan_events INDEXED BY scan_events_by_scan", ["scan_id = :scan_id", *where]
    if has_tenant:
        where.insert(0, "tenant = :tenant")
    if has_statuses:
        where.append("status IN (SELECT value FROM json_each(:statuses))")
    return f"SELECT {EVENT_COLUMNS} FROM {source} WHERE {' AND '.join(where)} ORDER BY seq LIMIT :limit"


def event_seq(event_id: str) -> int | None:
    """The ``seq`` an event id names, or None when it is not one this store makes."""
    if _EVENT_ID.fullmatch(event_id) is None or int(event_id) > _MAX_SEQ:
        return None
    return int(event_id)


def event_from_row(row: tuple[Any, ...]) -> ScanEvent:
    """A ``ScanEvent`` from a row in ``EVENT_COLUMNS`` order."""
    return ScanEvent(
        event_id=str(row[0]),
        scan_id=row[1],
        tenant=row[2],
        status=ScanStatus(row[3]),
        attempt=row[4],
        at=to_datetime(row[5]),
    )


def note_seen_head(path: Path, head: int) -> None:
    """Record that the calling task has read the log of the file ``path`` up to ``head`` (see ``wait_for_events``)."""
    _SEEN_HEAD.set((path, head))


def seen_head(path: Path) -> int | None:
    """How far the calling task has read the log of the file ``path`` (None: not known)."""
    seen = _SEEN_HEAD.get()
    return seen[1] if seen is not None and seen[0] == path else None


class ScanEvents:
    """The event-log operations of the ``Store`` contract (see ``store.base``), on SQLite."""

    if TYPE_CHECKING:
        path: Path
        _watcher: DataVersionWatcher | None
        _is_open: bool
        _is_closing: bool

        async def _write(self, apply: Apply[T]) -> T: ...

        async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    async def read_events(
        self,
        *,
        after: str | None = None,
        tenant: str | None = None,
        scan_id: str | None = None,
        statuses: frozenset[ScanStatus] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[ScanEvent]:
        after_seq = 0
        if after is not None:
            seq = event_seq(after)
            if seq is None:
                raise ValidationError(f"invalid event id {after!r}")
            after_seq = seq
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        sql = read_events_sql(has_scan=scan_id is not None, has_tenant=tenant is not None, has_statuses=bool(statuses))
        params: dict[str, Any] = {"after": after_seq, "limit": limit, "scan_id": scan_id, "tenant": tenant}
        if statuses is not None:
            if not statuses:
                return []
            params["statuses"] = msgspec.json.encode(sorted(str(status) for status in statuses)).decode()

        def query(conn: sqlite3.Connection) -> tuple[int, list[Any]]:
            conn.execute("BEGIN")  # one snapshot: the head and the page agree
            try:
                head = conn.execute(EVENTS_HEAD).fetchone()[0]
                rows = [] if after_seq > head else conn.execute(sql, params).fetchall()
            finally:
                conn.execute("COMMIT")
            return head, rows

        head, rows = await self._read(query)
        if after_seq > head:
            raise ValidationError(f"no event {after!r} was ever written")
        # A full page may stop short of the head: the caller has read only as far as its last event.
        note_seen_head(self.path, rows[-1][0] if len(rows) == limit else head)
        return [event_from_row(row) for row in rows]

    async def events_head(self) -> str:
        head: int = await self._read(lambda conn: conn.execute(EVENTS_HEAD).fetchone()[0])
        note_seen_head(self.path, head)
        return str(head)

    async def wait_for_events(self, *, timeout_s: float) -> None:
        if not self._is_open or self._is_closing or self._watcher is None:
            return
        await self._watcher.wait_for_events(timeout_s=timeout_s, seen=seen_head(self.path))

    async def prune_events(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        cutoff = before.timestamp()

        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            # In the writer's transaction: the role and the cursor cannot move before the delete.
            if conn.execute(IS_LEADER, {"role": RETENTION_ROLE, "owner": owner, "now": now}).fetchone() is None:
                return 0, False
            cursor = conn.execute(DISPATCH_CURSOR).fetchone()[0]
            # Deliveries carry their event: they stay (``Webhooks.prune_deliveries``).
            return len(
                conn.execute(PRUNE_EVENTS, {"cursor": cursor, "limit": limit, "before": cutoff}).fetchall()
            ), False

        return await self._write(apply)


__all__ = ["DISPATCH_CURSOR", "EVENT_COLUMNS", "ScanEvents", "event_from_row", "event_seq", "note_seen_head"]
