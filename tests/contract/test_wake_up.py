"""Waking idle workers: ``wait_for_work`` returns soon after a create elsewhere, else at its timeout.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import time

from scanq.store import Store
from tests.contract.helpers import DEADLINE_S, StoreFactory, new_scan, settle_wake_up

# The wait's own timeout is far beyond the test's deadline: a wait that ends within the deadline was woken
# by the create, not timed out (a generous deadline, not a latency goal: the pickup benchmark measures that).
LONG_WAIT_S = DEADLINE_S * 6


async def test_wait_for_work_wakes_soon_after_a_create_elsewhere(store: Store, open_another: StoreFactory) -> None:
    producer = await open_another()
    await settle_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_work(timeout_s=LONG_WAIT_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await producer.create(scan=new_scan())

    await asyncio.wait_for(waiting, DEADLINE_S)


async def test_wait_for_work_returns_at_its_timeout_when_nothing_happens(store: Store) -> None:
    await settle_wake_up(store)
    started = time.monotonic()

    await store.wait_for_work(timeout_s=0.3)

    assert 0.25 <= time.monotonic() - started < DEADLINE_S
