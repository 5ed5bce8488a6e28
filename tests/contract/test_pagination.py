"""Listing: newest first, a status filter, stable cursors while rows are inserted, bounded limits.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio

import pytest

from scanq.exceptions import ValidationError
from scanq.models import ScanStatus
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE, encode_cursor
from tests.contract.helpers import LONG_LEASE_S, all_scans, new_scan

CREATE_BATCH = 250


async def test_list_pages_newest_first_with_a_status_filter(store: Store) -> None:
    news = [new_scan() for _ in range(12)]
    for new in news:
        await store.create(scan=new)
    running = await store.claim(worker_id="w1", limit=4, lease_s=LONG_LEASE_S)

    first = await store.list_scans(limit=5)
    everything = await all_scans(store, limit=5)
    only_running = await all_scans(store, status=ScanStatus.RUNNING, limit=3)
    only_done = await store.list_scans(status=ScanStatus.COMPLETE)

    newest_first = [new.scan_id for new in reversed(news)]
    assert [s.scan_id for s in first.scans] == newest_first[:5]
    assert first.next_cursor is not None
    assert [s.scan_id for s in everything] == newest_first
    assert [s.scan_id for s in only_running] == sorted((s.scan_id for s in running), reverse=True)
    assert all(s.status == ScanStatus.RUNNING for s in only_running)
    assert (only_done.scans, only_done.next_cursor) == ([], None)


async def test_pagination_has_no_gaps_or_repeats_while_rows_are_inserted(store: Store) -> None:
    before = [new_scan() for _ in range(60)]
    for new in before:
        await store.create(scan=new)
    listing_started = asyncio.Event()

    async def insert_more() -> None:
        await listing_started.wait()
        for _ in range(60):
            await store.create(scan=new_scan())
            await asyncio.sleep(0)

    inserter = asyncio.create_task(insert_more())
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(limit=7, cursor=cursor)
        listing_started.set()
        seen.extend(scan.scan_id for scan in page.scans)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    await inserter

    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert set(seen) >= {new.scan_id for new in before}


async def test_a_bad_cursor_is_a_validation_error(store: Store) -> None:
    await store.create(scan=new_scan())

    for cursor in ("not a cursor!", encode_cursor("not-a-scan-id"), "%%%%"):
        with pytest.raises(ValidationError):
            await store.list_scans(cursor=cursor)


async def test_list_limit_is_bounded(store: Store) -> None:
    news = [new_scan() for _ in range(3)]
    await store.create_many(scans=news)

    smallest = await store.list_scans(limit=0)
    everything = await store.list_scans(limit=10**9)

    assert [s.scan_id for s in smallest.scans] == [news[-1].scan_id]
    assert smallest.next_cursor is not None
    assert [s.scan_id for s in everything.scans] == [new.scan_id for new in reversed(news)]
    assert everything.next_cursor is None


async def test_a_page_never_holds_more_than_the_page_size_cap(store: Store) -> None:
    over = 5
    news = [new_scan() for _ in range(MAX_PAGE_SIZE + over)]
    for start in range(0, len(news), CREATE_BATCH):
        await store.create_many(scans=news[start : start + CREATE_BATCH])
    newest_first = [new.scan_id for new in reversed(news)]

    for status in (None, ScanStatus.ACCEPTED):
        first = await store.list_scans(status=status, limit=MAX_PAGE_SIZE * 10)
        assert first.next_cursor is not None
        rest = await store.list_scans(status=status, limit=MAX_PAGE_SIZE * 10, cursor=first.next_cursor)

        assert [s.scan_id for s in first.scans] == newest_first[:MAX_PAGE_SIZE]
        assert ([s.scan_id for s in rest.scans], rest.next_cursor) == (newest_first[MAX_PAGE_SIZE:], None)
