"""Waking ``wait_for_work`` and ``wait_for_events``: the ``PRAGMA data_version`` watcher thread.

Commits of this store's own writer wake the waiters at once (``wake_all``, and
``report_events_head`` with the log's head the batch committed). Commits of
other connections, in any process, change ``PRAGMA data_version``; while
someone waits, one thread checks it every ``interval_s`` and wakes the work
waiters when claimable work exists, the event waiters when the event log's
head moved past what they had read. With nobody waiting, the thread sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path

from scanq.store.sqlite.connection import connect
from scanq.store.sqlite.statements import CLAIMABLE_EXISTS, EVENTS_HEAD

logger = logging.getLogger(__name__)


class DataVersionWatcher:
    """The waiters of ``wait_for_work`` and ``wait_for_events``; the thread that wakes them on others' commits.

    Args:
        path: the database file.
        busy_timeout_s: the watcher connection's busy timeout.
        interval_s: how often a waited-on watcher checks ``PRAGMA data_version``.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float, interval_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wanted = threading.Event()  # someone waits, for work or events: the thread polls
        self._is_work_wanted = threading.Event()
        # Read by the writer thread: report the head after each batch while someone waits for events.
        self.is_event_wanted = threading.Event()
        self._stop = threading.Event()
        self._waiters: set[asyncio.Future[None]] = set()
        # Each event waiter with the head it has read up to (None: unknown, the next report wakes it).
        self._event_waiters: dict[asyncio.Future[None], int | None] = {}
        self._events_head: int | None = None  # the highest head reported so far

    def start(self) -> None:
        """Start the (idle) thread; call on the event loop the waiters run on."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._watch_forever, name=f"scanq-sqlite-watch:{self.path}", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stop the thread and let every waiter go."""
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        for waiter in self._event_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._event_waiters.clear()
        self.wake_all()

    async def wait(self, *, timeout_s: float) -> None:
        """Return when woken, or after ``timeout_s``."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(waiter)
        self._is_work_wanted.set()
        self._wanted.set()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return
        finally:
            self._waiters.discard(waiter)
            self._refresh_wanted()

    async def wait_for_events(self, *, timeout_s: float, seen: int | None) -> None:
        """Return when the event log's head moves past ``seen``, or after ``timeout_s``.

        Args:
            seen: the head the caller has read up to (None: unknown). A head reported before the
                caller started waiting still counts: an event committed between its read and this
                wait is not slept through.
        """
        assert self._loop is not None
        baseline = seen if seen is not None else self._events_head
        if baseline is not None and self._events_head is not None and self._events_head > baseline:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._event_waiters[waiter] = baseline
        self.is_event_wanted.set()
        self._wanted.set()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return
        finally:
            self._event_waiters.pop(waiter, None)
            self._refresh_wanted()

    def wake_all(self) -> None:
        """Wake every ``wait_for_work`` waiter (on the event loop)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._refresh_wanted()

    def report_events_head(self, head: int) -> None:
        """The event log's head is ``head`` (on the event loop): wake the event waiters it is news to."""
        if self._events_head is None or head > self._events_head:
            self._events_head = head
        woken = [waiter for waiter, seen in self._event_waiters.items() if seen is None or head > seen]
        for waiter in woken:
            del self._event_waiters[waiter]
            if not waiter.done():
                waiter.set_result(None)
        self._refresh_wanted()

    def _refresh_wanted(self) -> None:
        """The thread idles until someone waits again (on the event loop, after a waiter left)."""
        if not self._waiters:
            self._is_work_wanted.clear()
        if not self._event_waiters:
            self.is_event_wanted.clear()
        if not self._waiters and not self._event_waiters:
            self._wanted.clear()

    def _watch_forever(self) -> None:
        conn: sqlite3.Connection | None = None
        # Each kind of waiter has its own last version: a change seen while only the other kind
        # waited is still news to the first waiter of this kind.
        last_work_version: int | None = None
        last_event_version: int | None = None
        try:
            while True:
                self._wanted.wait()
                if self._stop.is_set():
                    return
                try:
                    if conn is None:
                        conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if self._is_work_wanted.is_set() and version != last_work_version:
                        last_work_version = version
                        if conn.execute(CLAIMABLE_EXISTS, (time.time(),)).fetchone()[0]:
                            self._wake_from_thread()
                    if self.is_event_wanted.is_set() and version != last_event_version:
                        last_event_version = version
                        self._report_from_thread(conn.execute(EVENTS_HEAD).fetchone()[0])
                except sqlite3.Error as exc:
                    logger.debug("SQLite wake-up check failed: %s", exc)
                self._stop.wait(self.interval_s)
        finally:
            if conn is not None:
                conn.close()

    def _wake_from_thread(self) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self.wake_all)
        except RuntimeError:
            logger.debug("event loop closed; SQLite wake-up dropped")

    def _report_from_thread(self, head: int) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self.report_events_head, head)
        except RuntimeError:
            logger.debug("event loop closed; SQLite event head dropped")


__all__ = ["DataVersionWatcher"]
