"""The SQLite reader threads (``readers.Readers``): every read answered, errors translated, close waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from scanq.exceptions import StoreError
from scanq.store.sqlite.readers import Readers

READS = 500


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "readers.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(READS)])
    conn.close()
    return path


async def test_many_concurrent_reads_each_get_their_own_answer(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=3)
    try:

        async def read(n: int) -> int:
            row = await readers.submit(lambda conn: conn.execute("SELECT n FROM t WHERE n = ?", (n,)).fetchone())
            value: int = row[0]
            return value

        assert await asyncio.gather(*(read(n) for n in range(READS))) == list(range(READS))
    finally:
        await readers.close()


async def test_reads_run_on_reader_threads_with_one_connection_each(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=2)
    seen: set[tuple[str, int]] = set()

    def where(conn: sqlite3.Connection) -> None:
        seen.add((threading.current_thread().name, id(conn)))

    try:
        await asyncio.gather(*(readers.submit(where) for _ in range(50)))
    finally:
        await readers.close()
    assert all(name.startswith("scanq-sqlite-reader") for name, _ in seen)
    assert threading.current_thread().name not in {name for name, _ in seen}
    # A thread keeps its connection.
    assert len({name for name, _ in seen}) == len(seen)


async def test_a_failed_read_raises_store_error_and_the_others_are_answered(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=2)
    try:
        bad = readers.submit(lambda conn: conn.execute("SELECT * FROM missing").fetchall())
        good = readers.submit(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone())
        with pytest.raises(StoreError):
            await bad
        assert (await good)[0] == READS
    finally:
        await readers.close()


async def test_a_cancelled_reader_does_not_stop_the_answers(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1)
    started = threading.Event()
    release = threading.Event()

    def slow(conn: sqlite3.Connection) -> int:
        started.set()
        release.wait(10)
        return 1

    try:
        cancelled = readers.submit(slow)
        after = readers.submit(lambda conn: conn.execute("SELECT 2").fetchone()[0])
        await asyncio.to_thread(started.wait, 10)
        cancelled.cancel()
        release.set()
        assert await after == 2
    finally:
        await readers.close()


async def test_close_waits_for_queued_reads_then_refuses_new_ones(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1)
    pending = [readers.submit(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0]) for _ in range(20)]
    await readers.close()
    assert [future.result() for future in pending] == [READS] * 20
    with pytest.raises(RuntimeError):
        readers.submit(lambda conn: None)
    await readers.close()  # a second close does nothing


def _reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("scanq-sqlite-reader")]


async def test_threads_start_with_the_first_read_and_end_with_close(database: Path) -> None:
    before = len(_reader_threads())
    readers = Readers(database, busy_timeout_s=1.0, count=2)
    assert len(_reader_threads()) == before  # a process that never reads (a worker) keeps no idle threads
    await readers.submit(lambda conn: conn.execute("SELECT 1").fetchone())
    assert len(_reader_threads()) == before + 2
    await readers.close()
    assert len(_reader_threads()) == before
