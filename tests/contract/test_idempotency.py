"""Idempotency keys: a replayed key answers the stored scan, and racing creates with one key make one scan.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio

from scanq.models import ScanStatus
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, StoreFactory, new_scan


async def test_replayed_idempotency_key_returns_the_stored_scan(store: Store) -> None:
    first = await store.create(scan=new_scan(idempotency_key="key-1", target="a"))
    await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S)

    again = await store.create(scan=new_scan(idempotency_key="key-1", target="a"))
    in_batch = await store.create_many(scans=[new_scan(idempotency_key="key-1"), new_scan(idempotency_key="key-2")])

    assert first.is_new and not again.is_new
    assert again.scan.scan_id == first.scan.scan_id
    assert again.scan.status == ScanStatus.RUNNING  # the stored record as it is now
    assert [r.is_new for r in in_batch] == [False, True]
    assert in_batch[0].scan.scan_id == first.scan.scan_id
    assert sum((await store.stats()).counts.values()) == 2


async def test_concurrent_creates_with_one_key_make_one_scan(store: Store, open_another: StoreFactory) -> None:
    other = await open_another()

    results = await asyncio.gather(
        *(target.create(scan=new_scan(idempotency_key="race")) for target in [store, other] * 10)
    )

    assert sum(result.is_new for result in results) == 1
    assert len({result.scan.scan_id for result in results}) == 1
    assert sum((await store.stats()).counts.values()) == 1
