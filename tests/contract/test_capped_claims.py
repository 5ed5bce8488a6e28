"""Politeness over a long queue (Store rule 9): a capped claim steps over a run of a full target's scans.

``test_fairness.py`` checks the cap on queues a claim reads at once. Here the scans a capped claim may take lie
behind more of one target's scans than a claim looks at first (SQLite reads candidates in chunks of
``max(2 * limit, 16)``), so the claim has to go on past them: in claim order, exactly ``limit`` scans, none twice.
With a tenant per scan, every scan of the batch has the same fair key and the scan id orders them (ids made
later sort after earlier ones): the claim goes on after the last scan it looked at, by id.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scanq.models import NewScan, Scan
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, new_scan

CAP = 2
BUSY = "busy.example"
# More of the busy target's scans than the first look of a small claim: it ends inside the run.
RUN = 15


def ids(scans: Sequence[Scan] | Sequence[NewScan]) -> set[str]:
    return {scan.scan_id for scan in scans}


async def claim(store: Store, *, limit: int) -> list[Scan]:
    return await store.claim(worker_id="w1", limit=limit, lease_s=LONG_LEASE_S, max_per_target=CAP)


@pytest.mark.parametrize("tenants", ["one tenant", "a tenant per scan"])
async def test_a_capped_claim_goes_past_a_run_of_a_full_targets_scans(store: Store, tenants: str) -> None:
    made = 0

    def scan(*, target_key: str | None, priority: int) -> NewScan:
        nonlocal made
        made += 1
        tenant = "acme" if tenants == "one tenant" else f"t{made}"
        return new_scan(tenant=tenant, target_key=target_key, priority=priority)

    # Claim order (priority first, then submission order): a run of the busy target across priorities 6 and 5,
    # a scan without a target at 5, one at 4, more of the busy target and another target's scan at 4; then 0.
    busy = [scan(target_key=BUSY, priority=6 if i < RUN // 2 else 5) for i in range(RUN)]
    loose = [scan(target_key=None, priority=5), scan(target_key=None, priority=4)]
    later_busy = [scan(target_key=BUSY, priority=4) for _ in range(5)]
    other = scan(target_key="other.example", priority=4)
    low = scan(target_key="low.example", priority=0)
    await store.create_many(scans=[*busy, *loose, *later_busy, other, low])

    first = await claim(store, limit=1)
    second = await claim(store, limit=4)  # the busy target fills with its next scan; the rest are further on
    third = await claim(store, limit=4)

    assert ids(first) == {busy[0].scan_id}  # one, though the claim saw more it could take
    assert len(second) == 4
    assert ids(second) == {busy[1].scan_id, *ids(loose), other.scan_id}
    assert ids(third) == {low.scan_id}  # the busy target is full: none of its 18 waiting scans
    assert await claim(store, limit=4) == []
