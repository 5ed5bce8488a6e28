"""Queue statistics: a count for every status and the age of the oldest accepted scan.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from scanq.models import Finish, Outcome, ScanStatus
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, lease_of, new_scan


async def test_stats_counts_every_status(store: Store) -> None:
    empty = await store.stats()
    news = [new_scan() for _ in range(6)]
    for new in news:
        await store.create(scan=new)
    a, b, c = await store.claim(worker_id="w1", limit=3, lease_s=LONG_LEASE_S)
    await store.finish(
        finishes=[
            Finish(lease=lease_of(a), outcome=Outcome.COMPLETE, result={}),
            Finish(lease=lease_of(b), outcome=Outcome.ERROR, error="x"),
        ]
    )
    await store.cancel(scan_id=news[5].scan_id)

    stats = await store.stats()

    assert empty.counts == dict.fromkeys(ScanStatus, 0)
    assert empty.oldest_accepted_at is None
    assert stats.counts == {
        ScanStatus.ACCEPTED: 2,
        ScanStatus.RUNNING: 1,
        ScanStatus.COMPLETE: 1,
        ScanStatus.ERROR: 1,
        ScanStatus.CANCELLED: 1,
    }
    assert c.scan_id == news[2].scan_id
    assert stats.oldest_accepted_at == news[3].created_at
