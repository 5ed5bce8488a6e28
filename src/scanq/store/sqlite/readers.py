"""The reader threads: ``query_only`` connections serving ``get``/``list_scans``/``stats``.

In WAL mode readers never wait for the writer, so reads keep answering while
another process holds the write lock.

The hand-off is lighter than ``run_in_executor``, which the status service paid
for on every read (a ``concurrent.futures.Future`` with its ``Condition``, the
executor's queue and semaphore, a chained asyncio future and one wake-up of the
event loop per read: about a fifth of a by-id request's samples). Here a read is
an asyncio future and a tuple on a ``SimpleQueue``; the threads put answers on a
list and wake the loop once for all the answers that piled up meanwhile.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scanq.store.sqlite.connection import connect, wrap_errors

T = TypeVar("T")

_Query = Callable[[sqlite3.Connection], Any]
# A read and its answer: the future, then the value or the exception.
_Job = tuple[_Query, "asyncio.Future[Any]"]
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]


class Readers:
    """A pool of reader threads, each with its own connection (opened on its first read).

    Args:
        path: the database file.
        busy_timeout_s: each connection's busy timeout.
        count: threads (connections), at least one.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float, count: int) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._answers: list[_Answer] = []
        self._wake_pending = False
        self._conns: list[sqlite3.Connection] = []
        self._count = max(1, count)
        self._threads: list[threading.Thread] = []  # started by the first read (a process may never read)
        self._closed = False

    def submit(self, query: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``query`` on a reader connection; sqlite3 errors become ``StoreError``/``StoreUnavailable``."""
        if self._closed:
            raise RuntimeError("the SQLite readers are closed")
        if not self._threads:
            self._start()
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((query, future))
        return future

    async def close(self) -> None:
        """Let queued and running reads finish, then stop the threads and close every connection."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        await asyncio.to_thread(self._join)
        self._deliver()  # answers the last reads woke the loop for, if it has not run yet
        for conn in self._conns:
            conn.close()
        self._conns.clear()

    def _start(self) -> None:
        for number in range(self._count):
            thread = threading.Thread(target=self._serve, name=f"scanq-sqlite-reader-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        """One reader thread: its own connection, until ``close`` sends it None."""
        conn: sqlite3.Connection | None = None
        while (job := self._jobs.get()) is not None:
            query, future = job
            try:
                with wrap_errors():
                    if conn is None:
                        conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                        with self._lock:
                            self._conns.append(conn)
                    answer: _Answer = (future, query(conn), None)
            except BaseException as exc:  # handed to the awaiting coroutine, as run_in_executor does
                answer = (future, None, exc)
            with self._lock:
                self._answers.append(answer)
                if self._wake_pending:
                    continue  # the loop is already asked to deliver: it takes this one too
                self._wake_pending = True
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """On the loop: settle every answered future (one wake-up for all the answers that piled up)."""
        with self._lock:
            answers, self._answers = self._answers, []
            self._wake_pending = False
        for future, value, error in answers:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


__all__ = ["Readers"]
