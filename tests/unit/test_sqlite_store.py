"""SQLite-only details of ``SQLiteStore``: pragmas, schema versions, URLs, group commit, locks, wake-ups.

The behaviour every backend shares is in ``tests/contract``; these tests use real files in ``tmp_path``.
Several processes on one file: ``tests/acceptance/test_store_processes.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scanq.exceptions import ConfigError, ScanNotFound, StoreError, StoreUnavailable, ValidationError
from scanq.ids import new_scan_id
from scanq.models import DEFAULT_TENANT, Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store import open_store
from scanq.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path
from scanq.store.sqlite.connection import is_unavailable

SYNCHRONOUS_FULL = 2
TEMP_STORE_MEMORY = 2
# Wake-ups must come well within this, yet it is far below the 60 s polls and waits of the tests: only the
# wake-up mechanism under test explains a wake this early, even on a loaded machine.
WAKE_WITHIN_S = 10.0
NO_WAKE_S = 60.0
# The lock test's store waits 0.2 s for the lock; without a busy timeout it would hang until pytest's timeout.
LOCK_REPORTED_WITHIN_S = 20.0


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
    assert pragmas["busy_timeout"] == 0  # the writer takes the lock itself (begin_immediate): no sleeping handler
    assert pragmas["temp_store"] == TEMP_STORE_MEMORY
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


async def test_tenants_migration_keeps_existing_scans_and_counts_in_the_default_tenant(sqlite_url: str) -> None:
    """A file made before tenants (schema 2): its scans become the default tenant's, counts and keys intact."""
    path = db_file(sqlite_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    created_at = datetime.now(UTC).timestamp() - 3600
    old = {status: new_scan_id() for status in ("Accepted", "Running", "Complete", "Error", "Cancelled")}
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.executemany(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at, idempotency_key) VALUES (?, ?, 'mock', '{}', 0, 3, ?, ?, ?, ?)",
            [(scan_id, status, created_at, created_at, created_at, f"key-{status}") for status, scan_id in old.items()],
        )
    conn.close()

    async with SQLiteStore(sqlite_url) as store:
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
        every, default = await store.stats(), await store.stats(tenant=DEFAULT_TENANT)
        accepted = await store.get(scan_id=old["Accepted"], tenant=DEFAULT_TENANT)
        same_key = await store.create(scan=new_scan(idempotency_key="key-Accepted"))
        other_tenant = await store.create(scan=new_scan(idempotency_key="key-Accepted", tenant="acme"))

    assert every.counts == default.counts == dict.fromkeys(ScanStatus, 1)
    assert every.oldest_accepted_at == default.oldest_accepted_at == datetime.fromtimestamp(created_at, UTC)
    assert (accepted.tenant, accepted.submitted_by, accepted.cancelled_by) == (DEFAULT_TENANT, None, None)
    assert (same_key.is_new, same_key.scan.scan_id) == (False, old["Accepted"])
    assert other_tenant.is_new


async def test_fairness_migration_keeps_the_claim_order_of_existing_scans(sqlite_url: str) -> None:
    """A file of schema 3: its live scans take their created_at as fair key, so they are claimed as before.

    Before: priority DESC, then scan id (time-ordered, so creation order). A scan submitted after the
    upgrade comes after them, and the old Running scan, back to Accepted, keeps its place.
    """
    path = db_file(sqlite_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    created_at = datetime.now(UTC).timestamp() - 3600
    running = new_scan_id()
    # (scan id, priority, seconds after created_at), created in this order.
    old = [(new_scan_id(), priority, age) for priority, age in ((0, 1.0), (5, 2.0), (0, 3.0), (0, 4.0))]
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:3]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.executemany(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at, lease_expires_at) VALUES (?, ?, 'mock', '{}', ?, 3, ?, ?, ?, ?)",
            [
                *((scan_id, "Accepted", priority, created_at + age, created_at, created_at, None)
                  for scan_id, priority, age in old),
                (running, "Running", 0, created_at, created_at, created_at, created_at),
            ],
        )  # fmt: skip
    conn.close()

    async with SQLiteStore(sqlite_url) as store:
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
        newer = await store.create(scan=new_scan(target_key="example.org"))
        assert await store.requeue_expired() == 1  # the old Running scan is back with its place
        claimed = await store.claim(worker_id="w", limit=10, lease_s=30.0)

    assert [scan.scan_id for scan in claimed] == [
        old[1][0],
        running,
        old[0][0],
        old[2][0],
        old[3][0],
        newer.scan.scan_id,
    ]
    assert [scan.target_key for scan in claimed] == [None] * 5 + ["example.org"]


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
            assert time.monotonic() - started < LOCK_REPORTED_WITHIN_S
            assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 0  # reads still answer
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.create(scan=new_scan())  # and writes resume once the lock is gone


async def test_own_commits_wake_a_waiter_without_polling(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url, wake_interval_s=NO_WAKE_S) as store:
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await store.create(scan=new_scan())
        await asyncio.wait_for(waiting, WAKE_WITHIN_S)
        assert time.monotonic() - started < WAKE_WITHIN_S


async def test_data_version_wakes_a_waiter_on_another_processes_commit(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
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
        await asyncio.wait_for(waiting, WAKE_WITHIN_S)
        assert time.monotonic() - started < WAKE_WITHIN_S


# -- found by mutation testing (scripts/mutation): what each write does to a waiting worker, page edges, errors


async def _running_scan(store: SQLiteStore) -> Lease:
    created = await store.create(scan=new_scan())
    [claimed] = await store.claim(worker_id="w", limit=1, lease_s=60)
    assert claimed.scan_id == created.scan.scan_id
    return Lease(scan_id=claimed.scan_id, worker_id="w", attempt=1)


async def test_writes_that_leave_nothing_claimable_do_not_wake_a_waiter(sqlite_url: str) -> None:
    # The data_version watcher checks once when the wait starts, then not for a minute: only a wake-up of the
    # store's own writer can end this wait, and none of these writes makes work claimable.
    async with SQLiteStore(sqlite_url, wake_interval_s=NO_WAKE_S) as store:
        held, completed = await _running_scan(store), await _running_scan(store)
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
        await asyncio.sleep(0.1)
        await store.heartbeat(leases=[held], lease_s=60)
        assert await store.claim(worker_id="w", limit=1, lease_s=60) == []
        await store.pragmas()
        await store.cancel(scan_id=held.scan_id)  # running: only a cancel request
        assert await store.finish(finishes=[Finish(lease=completed, outcome=Outcome.COMPLETE, result={})]) == [True]
        assert await store.release(leases=[]) == 0
        await asyncio.sleep(0.2)
        assert not waiting.done(), "a write that made nothing claimable woke the waiter"
        waiting.cancel()


@pytest.mark.parametrize("how", ["retry", "release", "expiry"])
async def test_writes_that_requeue_a_scan_wake_a_waiter(sqlite_url: str, how: str) -> None:
    async with SQLiteStore(sqlite_url, wake_interval_s=NO_WAKE_S) as store:
        lease = await _running_scan(store)
        waiting = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
        await asyncio.sleep(0.1)
        if how == "retry":
            retry = Finish(lease=lease, outcome=Outcome.RETRY, error="e", retry_at=datetime.now(UTC))
            assert await store.finish(finishes=[retry]) == [True]
        elif how == "release":
            assert await store.release(leases=[lease]) == 1
        else:
            assert await store.heartbeat(leases=[lease], lease_s=0.01)
            await asyncio.sleep(0.05)
            assert await store.requeue_expired() == 1
        await asyncio.wait_for(waiting, WAKE_WITHIN_S)


async def test_a_waiter_that_times_out_leaves_the_others_watched(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        patient = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
        await store.wait_for_work(timeout_s=0.1)  # another waiter gives up first
        other = sqlite3.connect(db_file(sqlite_url), isolation_level=None)  # another process's commit
        now = time.time()
        other.execute(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at) VALUES (?, 'Accepted', 'mock', '{}', 0, 3, ?, ?, ?)",
            (new_scan_id(), now, now, now),
        )
        other.close()
        await asyncio.wait_for(patient, WAKE_WITHIN_S)


async def test_page_edges(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create_many(scans=[new_scan() for _ in range(60)])
        default = await store.list_scans()
        one = await store.list_scans(limit=1)
        at_least_one = await store.list_scans(limit=0)
        exact = await store.list_scans(limit=60)
        exact_by_status = await store.list_scans(status=ScanStatus.ACCEPTED, limit=60)

    assert len(default.scans) == 50 and default.next_cursor is not None
    assert len(one.scans) == 1 and len(at_least_one.scans) == 1
    assert len(exact.scans) == 60 and exact.next_cursor is None  # no cursor to an empty page
    assert len(exact_by_status.scans) == 60 and exact_by_status.next_cursor is None


async def test_errors_name_what_they_are_about(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        lease = await _running_scan(store)
        with pytest.raises(ScanNotFound) as missing:
            await store.cancel(scan_id="no-such-scan")
        with pytest.raises(ValidationError, match=f"duplicate scan id {lease.scan_id}"):
            await store.create_many(scans=[NewScan(scan_id=lease.scan_id, created_at=datetime.now(UTC))])
        with pytest.raises(ValidationError, match=r"^result must be JSON"):
            await store.finish(finishes=[Finish(lease=lease, outcome=Outcome.COMPLETE, result={"x": object()})])
        with pytest.raises(ScanNotFound) as unknown:
            await store.get(scan_id="no-such-scan-either")
    assert missing.value.scan_id == "no-such-scan"
    assert unknown.value.scan_id == "no-such-scan-either"


async def test_an_empty_store_counts_zero_of_every_status(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        stats = await store.stats()
    assert stats.counts == dict.fromkeys(ScanStatus, 0)


async def test_closing_stops_every_thread_and_refuses_later_calls(sqlite_url: str) -> None:
    store = SQLiteStore(sqlite_url)
    await store.aclose()  # closing a store never opened does nothing
    async with store:
        await store.create(scan=new_scan())
        mine = [t for t in threading.enumerate() if t.name.endswith(str(db_file(sqlite_url)))]
        assert {t.name.split(":")[0] for t in mine} == {"scanq-sqlite-writer", "scanq-sqlite-watch"}
    await store.aclose()  # a second close does nothing either

    assert not [t for t in mine if t.is_alive()]
    with pytest.raises(StoreError, match=r"^the SQLite store is not open$"):
        await store.get(scan_id="any")
    with pytest.raises(StoreError, match=r"^the SQLite store is not open$"):
        await store.create(scan=new_scan())


def test_only_busy_locked_and_cantopen_errors_mean_unavailable(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.Error) as no_table:
        conn.execute("SELECT * FROM no_such_table")
    conn.execute("CREATE TABLE t (x UNIQUE)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.Error) as duplicate:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    with pytest.raises(sqlite3.Error) as cannot_open:
        sqlite3.connect(f"file:{tmp_path}/missing/x.db?mode=rw", uri=True)
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.Error) as busy:
            sqlite3.connect(path, timeout=0, isolation_level=None).execute("BEGIN EXCLUSIVE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert not is_unavailable(no_table.value) and not is_unavailable(duplicate.value)
    assert is_unavailable(cannot_open.value) and is_unavailable(busy.value)


async def test_a_batch_answers_the_scans_as_stored(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        created = await store.create_many(scans=[new_scan(), new_scan()])
        stored = [await store.get(scan_id=c.scan.scan_id) for c in created]
        with pytest.raises(ValidationError, match=r"^options must be JSON"):
            await store.create(scan=new_scan(options={"x": object()}))
    assert [c.scan.updated_at for c in created] == [s.updated_at for s in stored]
    assert all(c.scan.updated_at is not None for c in created)
