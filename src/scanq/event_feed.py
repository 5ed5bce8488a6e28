"""Live scan events for many readers in one process: the store's event log (rule 10), followed.

One task per process (``EventFeed``) waits on ``Store.wait_for_events`` and,
when an event has settled since it last looked, wakes every open reader. Each
reader (``EventReader``: one per server-sent-event stream) then reads the log
after its own position with its own filters, a page at a time, and hands the
page on before it reads the next: a reader holds at most one page in memory,
and no reader polls the store on a timer. The feed's task runs only while
readers are open; besides the store's own wake-ups it looks every
``WAIT_TIMEOUT_S`` for an event that settled without one (on PostgreSQL an
event is read once every older transaction has ended, which may be after its
own commit's notification).

Who may read what is ``ScanService``'s rule for ``GET /scans``: the ``read``
scope, the caller's own tenant (an admin: any, or the one it names).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass

from scanq.backoff import backoff_delay
from scanq.exceptions import ScanNotFound, StoreError, ValidationError
from scanq.ids import is_scan_id
from scanq.models import OPERATOR, Caller, Scan, ScanEvent, ScanStatus, Scope
from scanq.scans import read_scope, require
from scanq.store.base import Store

logger = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 2.0
READ_PAGE_SIZE = 100
MAX_EVENT_ID_LENGTH = 200
# After the store failed, the feed's task waits this long (doubling) before it asks again.
ERROR_BACKOFF_BASE_S = 0.5
ERROR_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class EventFilter:
    """Which events a reader follows: one scan's, one tenant's (None: every tenant's), some statuses (None: all)."""

    scan_id: str | None = None
    tenant: str | None = None
    statuses: frozenset[ScanStatus] | None = None


class EventFeed:
    """The per-process wake-up for every open ``EventReader``, and where readers are opened.

    Args:
        store: an open store.
        wait_timeout_s: the longest the feed waits for the store's wake-up before it looks anyway.
    """

    def __init__(self, store: Store, *, wait_timeout_s: float = WAIT_TIMEOUT_S) -> None:
        self._store = store
        self._wait_timeout_s = wait_timeout_s
        self._readers: set[EventReader] = set()
        self._task: asyncio.Task[None] | None = None
        self._is_closed = False

    @property
    def readers(self) -> int:
        """How many readers are following the log now."""
        return len(self._readers)

    async def open_scan(
        self, scan_id: str, *, last_event_id: str | None = None, caller: Caller = OPERATOR
    ) -> EventReader | None:
        """A reader of one scan's events: its kept events from the first (or after ``last_event_id``), then live.

        The reader ends after the scan's terminal event; when the scan is terminal but that event is no
        longer kept (pruned), it ends with one made from the scan record, whose id is ``events_head()``.
        None when ``last_event_id`` is given, nothing of the scan follows it and the scan has finished:
        the client has seen the end already.

        Raise ``Forbidden``, ``ScanNotFound`` (also another tenant's scan), ``ValidationError`` for an
        ``last_event_id`` the store did not make.
        """
        require(caller, Scope.READ)
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        tenant = caller.tenant_filter()
        scan = await self._store.get(scan_id=scan_id, tenant=tenant)
        events = EventFilter(scan_id=scan_id, tenant=tenant)
        if last_event_id is None:
            # Taken before the first read: if that read finds nothing, nothing of this scan settled before it.
            head = await self._store.events_head()
            page = await self._read(events, after=None)
            return EventReader(self, events, position=page[-1].event_id if page else head, backlog=page, scan=scan)
        check_event_id(last_event_id)
        page = await self._read(events, after=last_event_id)
        if not page and scan.status.is_terminal:
            return None
        return EventReader(self, events, position=last_event_id, backlog=page, scan=scan)

    async def open_all(
        self,
        *,
        statuses: Collection[ScanStatus] = (),
        tenant: str | None = None,
        last_event_id: str | None = None,
        caller: Caller = OPERATOR,
    ) -> EventReader:
        """A reader of every scan's events the caller may read, from now (or after ``last_event_id``) on.

        ``statuses``: only transitions to these (empty: all). ``tenant``: an admin's filter (others may
        name only their own). Raise ``Forbidden`` or ``ValidationError``.
        """
        scope = read_scope(caller, tenant)
        events = EventFilter(tenant=scope, statuses=frozenset(statuses) or None)
        if last_event_id is None:
            return EventReader(self, events, position=await self._store.events_head(), backlog=[])
        check_event_id(last_event_id)
        page = await self._read(events, after=last_event_id)
        return EventReader(self, events, position=last_event_id, backlog=page)

    async def aclose(self) -> None:
        """End every reader and stop the task (the service is shutting down)."""
        self._is_closed = True
        for reader in list(self._readers):
            reader.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    async def _read(self, events: EventFilter, *, after: str | None) -> list[ScanEvent]:
        return await self._store.read_events(
            after=after,
            tenant=events.tenant,
            scan_id=events.scan_id,
            statuses=events.statuses,
            limit=READ_PAGE_SIZE,
        )

    async def _get_scan(self, scan_id: str, tenant: str | None) -> Scan:
        return await self._store.get(scan_id=scan_id, tenant=tenant)

    async def _head(self) -> str:
        return await self._store.events_head()

    def _attach(self, reader: EventReader) -> None:
        self._readers.add(reader)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="scanq-event-feed")

    def _detach(self, reader: EventReader) -> None:
        self._readers.discard(reader)

    def _wake_all(self) -> None:
        for reader in self._readers:
            reader.wake()

    async def _follow(self) -> None:
        """While readers are open: wait for the store's wake-up; when a new event settled, wake them all."""
        position: str | None = None
        failures = 0
        while self._readers and not self._is_closed:
            try:
                if position is None:
                    position = await self._store.events_head()
                    # A reader may have read just before this position was taken: it looks again.
                    self._wake_all()
                await self._store.wait_for_events(timeout_s=self._wait_timeout_s)
                if await self._store.read_events(after=position, limit=1):
                    # Taken before the readers look: whatever settles after it, this loop sees next time.
                    position = await self._store.events_head()
                    self._wake_all()
                failures = 0
            except Exception as exc:
                # A store outage (or a bug): the open streams wait (their keep-alives go on); this looks again.
                failures += 1
                delay = backoff_delay(
                    failures, base_s=ERROR_BACKOFF_BASE_S, max_s=ERROR_BACKOFF_MAX_S, full_jitter=False
                )
                logger.warning(
                    "event feed: reading the store failed (%s); looking again in %.1f s",
                    exc,
                    delay,
                    exc_info=not isinstance(exc, StoreError),
                    extra={"action": "event_feed_store_error"},
                )
                position = None
                await asyncio.sleep(delay)


class EventReader:
    """One follower of the event log, after its own position, with its own filter (see ``EventFeed``).

    Made by ``EventFeed.open_scan`` / ``open_all``; ``batches`` yields what it reads.
    """

    def __init__(
        self,
        feed: EventFeed,
        events: EventFilter,
        *,
        position: str | None,
        backlog: list[ScanEvent],
        scan: Scan | None = None,
    ) -> None:
        self._feed = feed
        self.filter = events
        self.position = position
        self._backlog = backlog
        self._scan = scan  # a scan's stream: it ends after the scan's terminal event
        self._wake = asyncio.Event()
        self._is_stopped = False

    def wake(self) -> None:
        """New events may have settled: read again."""
        self._wake.set()

    def stop(self) -> None:
        """End ``batches`` at its next step (the client went away, or the service stops)."""
        self._is_stopped = True
        self._wake.set()

    @property
    def is_stopped(self) -> bool:
        return self._is_stopped or self._feed.is_closed

    async def batches(self, *, keepalive_s: float) -> AsyncGenerator[list[ScanEvent], None]:
        """Pages of events in log order as they settle; an empty page when ``keepalive_s`` passed without one.

        Ends when ``stop`` is called, when the feed closes, or after a scan's terminal event. A
        ``StoreError`` ends it too (raised): the client resumes after the last event it got.
        """
        self._feed._attach(self)
        try:
            page, self._backlog = self._backlog, []
            is_caught_up = False
            while not self.is_stopped:
                if not page:
                    self._wake.clear()
                    page = await self._feed._read(self.filter, after=self.position)
                if not page and self._scan is not None and not is_caught_up:
                    is_caught_up = True
                    page = await self._end_of_finished_scan(self._scan)
                if page:
                    ended = self._cut_at_terminal(page)
                    self.position = ended[-1].event_id
                    yield ended
                    if self._scan is not None and ended[-1].status.is_terminal:
                        return
                    page = []
                    continue
                if not await self._wait(keepalive_s):
                    yield []
        finally:
            self._feed._detach(self)

    async def _end_of_finished_scan(self, seen: Scan) -> list[ScanEvent]:
        """Caught up on a scan's stream: if the scan has finished meanwhile, its terminal event (or one made up)."""
        try:
            scan = await self._feed._get_scan(seen.scan_id, self.filter.tenant)
        except ScanNotFound:
            scan = seen
        if not scan.status.is_terminal:
            return []
        head = await self._feed._head()
        page = await self._feed._read(self.filter, after=self.position)
        if page:
            return page
        # Its terminal event is no longer kept (or not yet readable): say how it ended, from the record.
        return [
            ScanEvent(
                event_id=head,
                scan_id=scan.scan_id,
                tenant=scan.tenant,
                status=scan.status,
                attempt=scan.attempt,
                at=scan.finished_at or scan.updated_at,
            )
        ]

    def _cut_at_terminal(self, page: list[ScanEvent]) -> list[ScanEvent]:
        if self._scan is None:
            return page
        for index, event in enumerate(page):
            if event.status.is_terminal:
                return page[: index + 1]
        return page

    async def _wait(self, timeout_s: float) -> bool:
        """True when woken (or stopped), False when ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True


def check_event_id(event_id: str) -> str:
    """A ``Last-Event-ID`` to resume after: ``ValidationError`` when it is empty, too long or not printable.

    Whether the store made it is the store's to say (``read_events`` raises ``ValidationError``).
    """
    if not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH or not event_id.isprintable():
        raise ValidationError(f"Last-Event-ID must be an event id, 1 to {MAX_EVENT_ID_LENGTH} printable characters")
    return event_id


__all__ = [
    "MAX_EVENT_ID_LENGTH",
    "READ_PAGE_SIZE",
    "WAIT_TIMEOUT_S",
    "EventFeed",
    "EventFilter",
    "EventReader",
    "check_event_id",
]
