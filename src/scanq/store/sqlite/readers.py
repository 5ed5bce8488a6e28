"""The reader threads: ``query_only`` connections serving ``get``/``list_scans``/``stats``.

In WAL mode readers never wait for the writer, so reads keep answering while
another process holds the write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from scanq.store.sqlite.connection import connect, wrap_errors

T = TypeVar("T")


class Readers:
    """A pool of reader threads, each with its own connection (opened on first use).

    Args:
        path: the database file.
        busy_timeout_s: each connection's busy timeout.
        count: threads (connections), at least one.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float, count: int) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=max(1, count), thread_name_prefix="scanq-sqlite-reader")
        self._loop = asyncio.get_running_loop()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []

    def submit(self, query: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``query`` on a reader connection; sqlite3 errors become ``StoreError``/``StoreUnavailable``."""
        return self._loop.run_in_executor(self._executor, self._run, query)

    async def close(self) -> None:
        """Wait for running reads, then close every connection."""
        await asyncio.to_thread(self._executor.shutdown, True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with wrap_errors():
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                self._local.conn = conn
                with self._lock:
                    self._conns.append(conn)
            return query(conn)


__all__ = ["Readers"]
