"""Waking idle workers: ``wait_for_work`` returns soon after a create elsewhere, else at its timeout.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import time

from scanq.store import Store
from tests.contract.helpers import DEADLINE_S, StoreFactory, new_scan, settle_wake_up


async def test_wait_for_work_wakes_soon_after_a_create_elsewhere(store: Store, open_another: StoreFactory) -> None:
    producer = await open_another()
    await settle_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_work(timeout_s=DEADLINE_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    started = time.monotonic()
    await producer.create(scan=new_scan())
    await asyncio.wait_for(waiting, DEADLINE_S)

    assert time.monotonic() - started < 2.0


async def test_wait_for_work_returns_at_its_timeout_when_nothing_happens(store: Store) -> None:
    await settle_wake_up(store)
    started = time.monotonic()

    await store.wait_for_work(timeout_s=0.3)

    assert 0.25 <= time.monotonic() - started < 2.0
