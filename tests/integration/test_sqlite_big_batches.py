"""SQLite: a ``create_many`` larger than one INSERT statement can carry is stored whole, or not at all.

The writer inserts a batch in multi-row statements of at most ``SQLITE_LIMIT_VARIABLE_NUMBER // INSERT_COLUMNS``
rows; a batch needing several runs them in a savepoint, so a duplicate id in a later statement undoes the earlier
ones and only the call with the duplicate fails.
"""

from __future__ import annotations

import asyncio
import sqlite3

from scanq.exceptions import ValidationError
from scanq.models import ScanStatus
from scanq.store.sqlite import SQLiteStore
from scanq.store.sqlite.statements import INSERT_COLUMNS
from tests.contract.helpers import new_scan

LEASE_S = 60.0


def rows_per_statement() -> int:
    conn = sqlite3.connect(":memory:")
    try:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // INSERT_COLUMNS
    finally:
        conn.close()


async def test_a_batch_of_several_statements_is_stored_whole_in_submission_order(sqlite_url: str) -> None:
    news = [new_scan() for _ in range(2 * rows_per_statement() + 1)]
    async with SQLiteStore(sqlite_url) as store:
        created = await store.create_many(scans=news)
        stats = await store.stats()
        last = await store.get(scan_id=news[-1].scan_id)
        first = await store.claim(worker_id="w", limit=3, lease_s=LEASE_S)

    assert [answer.scan.scan_id for answer in created] == [new.scan_id for new in news]
    assert stats.counts[ScanStatus.ACCEPTED] == len(news)
    assert last.status is ScanStatus.ACCEPTED
    assert [scan.scan_id for scan in first] == [new.scan_id for new in news[:3]]


async def test_a_duplicate_in_a_later_statement_fails_only_its_call_and_keeps_none_of_it(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        existing = (await store.create(scan=new_scan())).scan
        doomed = [new_scan() for _ in range(rows_per_statement() + 1)]
        doomed[-1] = new_scan(scan_id=existing.scan_id)  # in the second statement
        fine = [new_scan() for _ in range(3)]

        outcomes = await asyncio.gather(
            store.create_many(scans=doomed), store.create_many(scans=fine), return_exceptions=True
        )
        later = (await store.create(scan=new_scan())).scan
        stats = await store.stats()
        claimed = await store.claim(worker_id="w", limit=10, lease_s=LEASE_S)

    assert isinstance(outcomes[0], ValidationError)
    assert str(outcomes[0]) == f"duplicate scan id {existing.scan_id}"
    assert not isinstance(outcomes[1], BaseException)
    assert stats.counts[ScanStatus.ACCEPTED] == 1 + len(fine) + 1
    # The failed call took no place in the queue: the scans come in submission order, the later one last.
    assert [scan.scan_id for scan in claimed] == [existing.scan_id, *(new.scan_id for new in fine), later.scan_id]


async def test_each_batch_is_one_transaction(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        before = store.transactions
        for _ in range(3):
            await store.create_many(scans=[new_scan() for _ in range(rows_per_statement() + 1)])

        assert store.transactions - before == 3
