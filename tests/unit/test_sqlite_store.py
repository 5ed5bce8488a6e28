"""SQLite-only details of ``SQLiteStore``: pragmas, schema versions, URLs, group commit, locks, processes.

The behaviour every backend shares is in ``tests/contract``; these tests use real files in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scanq.exceptions import ConfigError, StoreError, StoreUnavailable
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store import open_store
from scanq.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path

SYNCHRONOUS_FULL = 2


def new_scan(**fields: object) -> NewScan:
    return NewScan(**{"scan_id": new_scan_id(), "created_at": datetime.now(UTC), **fields})  # type: ignore[arg-type]


def db_file(url: str) -> Path:
    return sqlite_path(url)


async def test_open_sets_wal_full_sync_and_the_schema_version(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        pragmas = await store.pragmas()

    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == SYNCHRONOUS_FULL
    assert pragmas["user_version"] == SCHEMA_VERSION == len(MIGRATIONS)
    with sqlite3.connect(db_file(sqlite_url)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, seen by any connection
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_migrations_build_the_same_schema_as_opening_a_store(sqlite_url: str, tmp_path: Path) -> None:
    async with SQLiteStore(sqlite_url):
        pass
    baseline = sqlite3.connect(tmp_path / "baseline.db")
    for migration in MIGRATIONS:
        for statement in migration:
            baseline.execute(statement)

    def schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        return conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").fetchall()

    with sqlite3.connect(db_file(sqlite_url)) as opened:
        assert schema(opened) == schema(baseline)
    baseline.close()


async def test_reopening_keeps_data_and_does_not_migrate_again(sqlite_url: str) -> None:
    new = new_scan()
    async with SQLiteStore(sqlite_url) as store:
        await store.create(scan=new)
    async with SQLiteStore(sqlite_url) as store:
        assert (await store.get(scan_id=new.scan_id)).status == ScanStatus.ACCEPTED
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION


async def test_a_newer_schema_is_refused(sqlite_url: str) -> None:
    path = db_file(sqlite_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore(sqlite_url).open()


def test_url_paths_follow_the_sqlalchemy_convention() -> None:
    assert sqlite_path("sqlite:///scanq.db") == Path("scanq.db")
    assert sqlite_path("sqlite:///data/scanq.db") == Path("data/scanq.db")
    assert sqlite_path("sqlite:////var/lib/scanq/scanq.db") == Path("/var/lib/scanq/scanq.db")
    assert sqlite_path("sqlite:////tmp/my%20dir/q.db?mode=x") == Path("/tmp/my dir/q.db")
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "postgresql:///x"):
        with pytest.raises(ConfigError):
            sqlite_path(bad)


async def test_open_creates_the_parent_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a/b/scanq.db"

    async with open_store(url) as store:
        await store.ping()

    assert (tmp_path / "a" / "b" / "scanq.db").is_file()


async def test_an_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")

    with pytest.raises(StoreError):
        await SQLiteStore(f"sqlite:///{tmp_path}/not-a-dir/scanq.db").open()


async def test_concurrent_creates_share_transactions(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        before = store.transactions
        results = await asyncio.gather(*(store.create(scan=new_scan()) for _ in range(300)))
        used = store.transactions - before

    assert len({r.scan.scan_id for r in results}) == 300
    assert 1 <= used < 100, used


async def test_counts_table_matches_the_rows(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create_many(scans=[new_scan() for _ in range(20)])
        claimed = await store.claim(worker_id="w", limit=12, lease_s=0.2)
        await store.finish(
            finishes=[
                Finish(lease=Lease(scan_id=s.scan_id, worker_id="w", attempt=1), outcome=outcome, error="e")
                for s, outcome in zip(claimed[:6], [Outcome.COMPLETE, Outcome.ERROR, Outcome.RETRY] * 2, strict=True)
            ]
        )
        await store.release(leases=[Lease(scan_id=claimed[6].scan_id, worker_id="w", attempt=1)])
        await store.cancel(scan_id=claimed[7].scan_id)
        await asyncio.sleep(0.3)
        await store.requeue_expired()
        stats = await store.stats()

    with sqlite3.connect(db_file(sqlite_url)) as conn:
        actual = dict(conn.execute("SELECT status, count(*) FROM scans GROUP BY status").fetchall())
    assert {str(status): n for status, n in stats.counts.items() if n} == actual
    assert sum(stats.counts.values()) == 20


async def test_a_held_write_lock_times_out_as_unavailable(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url, busy_timeout_s=0.2) as store:
        blocker = sqlite3.connect(db_file(sqlite_url), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.create(scan=new_scan())
            assert time.monotonic() - started < 5
            assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 0  # reads still answer
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.create(scan=new_scan())  # and writes resume once the lock is gone


async def test_own_commits_wake_a_waiter_without_polling(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url, wake_interval_s=30.0) as store:
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=20.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await store.create(scan=new_scan())
        await asyncio.wait_for(waiting, 5.0)
        assert time.monotonic() - started < 1.0


async def test_data_version_wakes_a_waiter_on_another_processes_commit(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=20.0))
        await asyncio.sleep(0.1)
        # A plain connection stands in for another process: only data_version can see it.
        other = sqlite3.connect(db_file(sqlite_url), isolation_level=None)
        now = time.time()
        started = time.monotonic()
        other.execute(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at) VALUES (?, 'Accepted', 'mock', '{}', 0, 3, ?, ?, ?)",
            (new_scan_id(), now, now, now),
        )
        other.close()
        await asyncio.wait_for(waiting, 5.0)
        assert time.monotonic() - started < 1.0


PROCESS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import UTC, datetime
    from scanq.ids import new_scan_id
    from scanq.models import NewScan
    from scanq.store import open_store

    async def main(url, name, per_process, processes):
        async with open_store(url) as store:
            for _ in range(per_process):
                await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
            deadline = time.monotonic() + 30
            while sum((await store.stats()).counts.values()) < per_process * processes:
                assert time.monotonic() < deadline, "the other processes never created their scans"
                await asyncio.sleep(0.01)
            mine = []
            while batch := await store.claim(worker_id=name, limit=3, lease_s=60):
                mine += [scan.scan_id for scan in batch]
            print(json.dumps(mine))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


@pytest.mark.slow
def test_processes_opening_one_new_file_each_claim_distinct_scans(sqlite_url: str) -> None:
    processes, per_process = 4, 40
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, sqlite_url, f"p{i}", str(per_process), str(processes)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    claimed: Counter[str] = Counter()
    for child in children:
        out, err = child.communicate(timeout=50)
        assert child.returncode == 0, err
        claimed.update(json.loads(out))

    assert len(claimed) == processes * per_process
    assert set(claimed.values()) == {1}
