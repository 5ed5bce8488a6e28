"""SQLite: closing refuses the calls that come after it has begun (a ping says why); a closed store opens again.

A server shutting down closes its store while requests may still arrive: those get ``StoreError`` at once,
not an answer from threads that are being stopped; the tasks already waiting (workers, event streams) return.
``tests/unit/test_sqlite_store.py`` covers the calls made after the close has finished.
"""

from __future__ import annotations

import asyncio

import pytest

from scanq.exceptions import StoreError, StoreUnavailable
from scanq.models import ScanStatus
from scanq.store.sqlite import SQLiteStore
from tests.contract.helpers import new_scan

NO_WAKE_S = 60.0
RELEASED_WITHIN_S = 10.0


async def test_calls_made_while_the_store_closes_are_refused(sqlite_url: str) -> None:
    store = SQLiteStore(sqlite_url)
    await store.open()
    created = (await store.create(scan=new_scan())).scan

    closing = asyncio.create_task(store.aclose())
    await asyncio.sleep(0)  # the close has begun: its threads are stopping
    try:
        with pytest.raises(StoreError, match="not open"):
            await store.get(scan_id=created.scan_id)
        with pytest.raises(StoreError, match="not open"):
            await store.create(scan=new_scan())
    finally:
        await closing


async def test_a_closed_store_opens_again_with_its_data(sqlite_url: str) -> None:
    store = SQLiteStore(sqlite_url)
    await store.open()
    created = (await store.create(scan=new_scan())).scan
    await store.aclose()

    await store.open()
    try:
        again = await store.get(scan_id=created.scan_id)
        await store.create(scan=new_scan())
        stats = await store.stats()
    finally:
        await store.aclose()

    assert again.status is ScanStatus.ACCEPTED
    assert stats.counts[ScanStatus.ACCEPTED] == 2


async def test_a_ping_of_a_closed_store_says_why_it_is_unavailable(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.ping()

    with pytest.raises(StoreUnavailable, match=r"^the SQLite store is not open$"):
        await store.ping()


async def test_closing_releases_the_tasks_waiting_for_work_and_events(sqlite_url: str) -> None:
    store = SQLiteStore(sqlite_url)
    await store.open()
    assert await store.read_events() == []  # read up to the head, with no work: both waits below sleep
    waits = [
        asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S)),
        asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S)),
    ]
    await asyncio.sleep(0.3)
    assert not any(wait.done() for wait in waits)

    await store.aclose()

    await asyncio.wait_for(asyncio.gather(*waits), RELEASED_WITHIN_S)
