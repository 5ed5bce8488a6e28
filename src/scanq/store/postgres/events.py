"""PostgreSQL: reading and pruning the scan event log (``Store`` rule 10), the table ``scan_events``.

``ScanEvents`` is mixed into ``PostgresStore`` like ``finished.FinishedScans``.
The events themselves are inserted by the transition statements of
``sql/queries.sql`` (each one's ``evented`` CTE), and ``wait_for_events`` is
``PostgresStore``'s, beside ``wait_for_work`` (one ``LISTEN`` connection).

The log's order is ``(txid, seq)``: the inserting transaction's id, then a
sequence number. Only *settled* events are read, those whose ``txid`` is below
the reading snapshot's ``xmin``: every transaction below it has ended, and every
event inserted later has a larger ``txid``, so a reader that goes on after the
last event it read never misses one. The price: a transaction that stays open
anywhere on the server (any database: transaction ids are the cluster's) holds
back the events ordered after its own ids until it ends; they are delayed,
never skipped. An event's id is ``"<txid>.<seq>"``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from scanq.exceptions import ValidationError
from scanq.ids import is_scan_id
from scanq.models import ScanEvent, ScanStatus
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE
from scanq.store.postgres import statements
from scanq.store.postgres.rows import event_from_row, event_id, parse_event_id

if TYPE_CHECKING:
    import asyncpg

# Before every event: seq starts at 1.
_BEFORE_ALL = (0, 0)


class ScanEvents:
    """The event log's read and retention operations of the ``Store`` contract (see ``store.base``)."""

    if TYPE_CHECKING:

        async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def read_events(
        self,
        *,
        after: str | None = None,
        tenant: str | None = None,
        scan_id: str | None = None,
        statuses: frozenset[ScanStatus] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[ScanEvent]:
        position = _BEFORE_ALL if after is None else parse_event_id(after)
        if position is None:
            raise ValidationError(f"invalid event id {after!r}")
        if limit <= 0:
            return []
        limit = min(limit, MAX_PAGE_SIZE)
        wanted = None if statuses is None else sorted(str(status) for status in statuses)
        if scan_id is None:
            rows = await self._fetch(statements.READ_EVENTS, *position, limit, tenant, wanted)
        elif not is_scan_id(scan_id):
            return []  # no such scan, so no events
        else:
            rows = await self._fetch(statements.READ_SCAN_EVENTS, *position, limit, tenant, wanted, scan_id)
        return [event_from_row(row) for row in rows]

    async def events_head(self) -> str:
        rows = await self._fetch(statements.EVENTS_HEAD)
        # Every settled event is before (xmin, 0), every later one after it (its txid is xmin or more).
        return event_id(rows[0]["xmin"], 0)

    async def prune_events(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        if limit <= 0:
            return 0
        rows = await self._fetch(statements.PRUNE_EVENTS, before, owner, RETENTION_ROLE, min(limit, MAX_PAGE_SIZE))
        return int(rows[0]["events"])


__all__ = ["ScanEvents"]
