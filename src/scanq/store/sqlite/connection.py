"""Connections to the SQLite file: opening one with scanq's pragmas, taking the write lock, translating errors."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from scanq.exceptions import StoreError, StoreUnavailable

CACHE_SIZE_KIB = 16_384
# Retrying BEGIN IMMEDIATE ourselves: SQLite's own busy handler sleeps up to 100 ms
# between tries, far longer than the ~1 ms another process holds the write lock.
LOCK_RETRY_MIN_S = 0.0002
LOCK_RETRY_MAX_S = 0.005

_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN})


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate sqlite3 errors: a lock timeout or an unopenable file is ``StoreUnavailable``, else ``StoreError``."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc
        raise StoreError(f"SQLite store failed: {exc}") from exc


def is_unavailable(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is a lock held elsewhere or a file that cannot be opened (worth retrying later)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _UNAVAILABLE_CODES


def connect(path: Path, *, busy_timeout_s: float, is_reader: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread; readers are query-only."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")
    if is_reader:
        conn.execute("PRAGMA query_only = ON")
    return conn


def begin_immediate(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Take the write lock, retrying with short jittered sleeps until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = LOCK_RETRY_MIN_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_unavailable(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, LOCK_RETRY_MAX_S)


__all__ = ["LOCK_RETRY_MAX_S", "begin_immediate", "connect", "is_unavailable", "wrap_errors"]
