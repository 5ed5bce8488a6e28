"""The SQLite reads: on the event loop while they are short, else on reader threads.

In WAL mode readers never wait for the writer, so reads keep answering while
another process holds the write lock.

A read first runs on the event loop's own ``query_only`` connection, and only
while it is short: a progress handler runs every ``PROGRESS_STEPS`` SQLite
instructions of a statement and interrupts the read at its second call (its
count runs on over a cached statement's executions, so the first call may come
at any step). A by-id read takes 43 instructions, a count of the stats 154, a
page of 50 scans about 1,850 (its SQL alone 120-160 µs, which a thread runs
without the GIL while the loop answers others). An interrupted read, or one
that meets a lock (that connection never waits: ``busy_timeout`` 0), is rolled
back and handed to a reader thread, and reads of the same code (the query
function's code object) go straight to the threads for ``THREAD_SPELL_S``, so
a long read wastes at most ~1,000 instructions a second. Reads have no side
effects (``query_only``), so running one again is safe.

A by-id read takes about 11 µs of SQLite; handing it to a thread cost more
than the read (a future, a queue, a thread wake-up, the GIL passed back and
forth, a wake-up of the loop): with the hot path's read lane, 216 → 94 µs of
CPU a by-id request at 100k scans and 64 clients (``bench.status_ab``).

The thread hand-off is lighter than ``run_in_executor``: a read is an asyncio
future and a tuple on a ``SimpleQueue``; the threads put answers on a list and
wake the loop once for all the answers that piled up meanwhile.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scanq.exceptions import StoreError
from scanq.store.sqlite.connection import connect, wrap_errors

T = TypeVar("T")

_Query = Callable[[sqlite3.Connection], Any]
# A read and its answer: the future, then the value or the exception.
_Job = tuple[_Query, "asyncio.Future[Any]"]
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]

# SQLite VM instructions between two calls of the progress handler; a read on the loop gets one call.
PROGRESS_STEPS = 500
# A read too long for the loop sends the reads of its code to the threads for this long, then tries again.
THREAD_SPELL_S = 1.0
# Errors after which the read runs again on a thread: interrupted (too long), or a lock met.
_AGAIN_ON_A_THREAD = frozenset({sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class Readers:
    """The loop's connection, then a pool of reader threads, each with its own connection (opened on first use).

    Args:
        path: the database file.
        busy_timeout_s: each thread connection's busy timeout.
        count: threads (connections), at least one.
        is_inline: False: every read on a thread.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float, count: int, is_inline: bool = True) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.is_inline = is_inline
        self._inline: sqlite3.Connection | None = None
        self._calls = 0  # of the progress handler, in the read on the loop's connection
        self._to_threads: dict[object, float] = {}  # the code of reads too long for the loop: until when
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
        future: asyncio.Future[T] = self._loop.create_future()
        if self.is_inline and self._read_inline(query, future):
            return future
        if not self._threads:
            self._start()
        self._jobs.put((query, future))
        return future

    def _read_inline(self, query: _Query, future: asyncio.Future[Any]) -> bool:
        """Run ``query`` on the loop's connection and settle ``future``; False: it must run on a thread."""
        code = getattr(query, "__code__", query)
        if self._to_threads and self._to_threads.get(code, 0.0) > time.monotonic():
            return False
        conn = self._inline
        if conn is None:
            try:
                conn = connect(self.path, busy_timeout_s=0.0, is_reader=True)
            except sqlite3.Error:
                return False  # the thread's try answers the error
            conn.set_progress_handler(self._is_too_long, PROGRESS_STEPS)
            self._inline = conn
        self._calls = 0
        try:
            value = query(conn)
        except Exception as exc:
            self._calls = -(1 << 30)  # the rollback is not interrupted
            self._end_transaction(conn)
            error_code = getattr(exc, "sqlite_errorcode", None)
            if isinstance(exc, sqlite3.OperationalError) and error_code is not None:
                if error_code & 0xFF in _AGAIN_ON_A_THREAD:
                    if error_code & 0xFF == sqlite3.SQLITE_INTERRUPT:
                        self._to_threads[code] = time.monotonic() + THREAD_SPELL_S
                    return False
            future.set_exception(_translated(exc))
        else:
            future.set_result(value)
        return True

    def _end_transaction(self, conn: sqlite3.Connection) -> None:
        """Roll back what a failed read left open; a connection that cannot is closed (the next read opens one)."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            conn.close()
            self._inline = None

    def _is_too_long(self) -> bool:
        self._calls += 1
        return self._calls > 1

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
        if self._inline is not None:
            self._inline.close()
            self._inline = None

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


def _translated(exc: Exception) -> Exception:
    """``exc`` as the reader threads raise it: sqlite3 errors become ``StoreError``/``StoreUnavailable``."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    try:
        with wrap_errors():
            raise exc
    except StoreError as translated:
        return translated


__all__ = ["PROGRESS_STEPS", "Readers"]
