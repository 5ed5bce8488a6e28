"""The SQLite reads (``readers.Readers``): on the loop while short, else on reader threads; every read
answered, errors translated, close waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from scanq.exceptions import StoreError
from scanq.store.sqlite import readers as readers_module
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


@pytest.mark.parametrize("is_inline", [True, False], ids=["inline", "threads"])
async def test_many_concurrent_reads_each_get_their_own_answer(database: Path, is_inline: bool) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=3, is_inline=is_inline)
    try:

        async def read(n: int) -> int:
            row = await readers.submit(lambda conn: conn.execute("SELECT n FROM t WHERE n = ?", (n,)).fetchone())
            value: int = row[0]
            return value

        assert await asyncio.gather(*(read(n) for n in range(READS))) == list(range(READS))
    finally:
        await readers.close()


async def test_reads_run_on_reader_threads_with_one_connection_each(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=2, is_inline=False)
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


@pytest.mark.parametrize("is_inline", [True, False], ids=["inline", "threads"])
async def test_a_failed_read_raises_store_error_and_the_others_are_answered(database: Path, is_inline: bool) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=2, is_inline=is_inline)
    try:
        bad = readers.submit(lambda conn: conn.execute("SELECT * FROM missing").fetchall())
        good = readers.submit(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone())
        with pytest.raises(StoreError):
            await bad
        assert (await good)[0] == READS
    finally:
        await readers.close()


async def test_a_cancelled_reader_does_not_stop_the_answers(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1, is_inline=False)
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
    readers = Readers(database, busy_timeout_s=1.0, count=1, is_inline=False)
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
    readers = Readers(database, busy_timeout_s=1.0, count=2, is_inline=False)
    assert len(_reader_threads()) == before  # a process that never reads (a worker) keeps no idle threads
    await readers.submit(lambda conn: conn.execute("SELECT 1").fetchone())
    assert len(_reader_threads()) == before + 2
    await readers.close()
    assert len(_reader_threads()) == before


# Counts to a large number in SQLite alone: millions of instructions.
LONG_READ = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000) SELECT count(*) FROM c"


def _where(conn: sqlite3.Connection) -> str:
    return threading.current_thread().name


async def test_a_short_read_runs_on_the_loop_and_starts_no_thread(database: Path) -> None:
    before = len(_reader_threads())
    readers = Readers(database, busy_timeout_s=1.0, count=2)
    try:
        future = readers.submit(_where)
        assert future.done()  # answered before the loop ran again
        assert await future == threading.current_thread().name
        assert len(_reader_threads()) == before
    finally:
        await readers.close()


async def test_a_long_read_is_interrupted_and_answered_by_a_thread(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1)

    def long_read(conn: sqlite3.Connection) -> tuple[int, str]:
        return conn.execute(LONG_READ).fetchone()[0], threading.current_thread().name

    try:
        assert await readers.submit(long_read) == (1_000_000, "scanq-sqlite-reader-0")
        # The same code goes to the threads for a while; other reads stay on the loop.
        assert (await readers.submit(long_read))[1] == "scanq-sqlite-reader-0"
        assert await readers.submit(_where) == threading.current_thread().name
    finally:
        await readers.close()


async def test_the_code_of_a_long_read_tries_the_loop_again_after_a_spell(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers_module, "THREAD_SPELL_S", 0.0)
    readers = Readers(database, busy_timeout_s=1.0, count=1)
    calls: list[str] = []

    def read(conn: sqlite3.Connection) -> int:
        calls.append(threading.current_thread().name)
        value: int = conn.execute(LONG_READ if len(calls) <= 2 else "SELECT 7").fetchone()[0]
        return value

    try:
        assert await readers.submit(read) == 1_000_000  # interrupted on the loop, then done on the thread
        assert await readers.submit(read) == 7
        loop_thread = threading.current_thread().name
        assert calls == [loop_thread, "scanq-sqlite-reader-0", loop_thread]
    finally:
        await readers.close()


async def test_an_interrupted_read_leaves_no_transaction_open(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1)
    connections: list[sqlite3.Connection] = []

    def snapshot_read(conn: sqlite3.Connection) -> int:
        connections.append(conn)
        conn.execute("BEGIN")
        value: int = conn.execute(LONG_READ).fetchone()[0]  # no COMMIT when it fails: the readers roll back
        conn.execute("COMMIT")
        return value

    try:
        assert await readers.submit(snapshot_read) == 1_000_000
        assert not connections[0].in_transaction
        assert await readers.submit(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0]) == READS
    finally:
        await readers.close()


async def test_a_read_that_meets_a_lock_waits_for_it_on_a_thread(database: Path) -> None:
    locker = sqlite3.connect(database, isolation_level=None)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")  # in WAL mode an exclusive locker keeps every reader out
    readers = Readers(database, busy_timeout_s=5.0, count=1)
    try:
        pending = readers.submit(lambda conn: (conn.execute("SELECT count(*) FROM t").fetchone()[0], _where(conn)))
        assert not pending.done()  # the loop's connection never waits for a lock
        await asyncio.sleep(0.1)
        locker.execute("COMMIT")
        locker.close()
        assert await pending == (READS, "scanq-sqlite-reader-0")
    finally:
        locker.close()
        await readers.close()


async def test_a_page_of_rows_goes_to_a_thread_and_a_point_read_stays_on_the_loop(database: Path) -> None:
    readers = Readers(database, busy_timeout_s=1.0, count=1)
    loop_thread = threading.current_thread().name

    def page(conn: sqlite3.Connection) -> tuple[int, str]:
        return len(conn.execute("SELECT n FROM t ORDER BY n DESC").fetchall()), _where(conn)

    def point(conn: sqlite3.Connection) -> tuple[int, str]:
        return conn.execute("SELECT n FROM t WHERE n = ?", (7,)).fetchone()[0], _where(conn)

    try:
        for _ in range(3 * readers_module.PROGRESS_STEPS):  # the handler's count runs over the executions
            assert await readers.submit(point) == (7, loop_thread)
        assert await readers.submit(page) == (READS, "scanq-sqlite-reader-0")
    finally:
        await readers.close()
