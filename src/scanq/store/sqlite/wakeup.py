"""Waking ``wait_for_work``: the ``PRAGMA data_version`` watcher thread.

Commits of this store's own writer wake the waiters at once (``wake_all``).
Commits of other connections, in any process, change ``PRAGMA data_version``;
while someone waits, one thread checks it every ``interval_s`` and wakes the
waiters when claimable work exists. With nobody waiting, the thread sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path

from scanq.store.sqlite.connection import connect
from scanq.store.sqlite.statements import CLAIMABLE_EXISTS

logger = logging.getLogger(__name__)


class DataVersionWatcher:
    """The waiters of ``wait_for_work`` and the thread that wakes them on other connections' commits.

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
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._waiters: set[asyncio.Future[None]] = set()

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
        self.wake_all()

    async def wait(self, *, timeout_s: float) -> None:
        """Return when woken, or after ``timeout_s``."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(waiter)
        self._wanted.set()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return
        finally:
            self._waiters.discard(waiter)
            if not self._waiters:
                self._wanted.clear()

    def wake_all(self) -> None:
        """Wake every waiter (on the event loop); the thread idles until someone waits again."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._wanted.clear()

    def _watch_forever(self) -> None:
        conn: sqlite3.Connection | None = None
        last_version: int | None = None
        try:
            while True:
                self._wanted.wait()
                if self._stop.is_set():
                    return
                try:
                    if conn is None:
                        conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version != last_version:
                        last_version = version
                        if conn.execute(CLAIMABLE_EXISTS, (time.time(),)).fetchone()[0]:
                            self._wake_from_thread()
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


__all__ = ["DataVersionWatcher"]
