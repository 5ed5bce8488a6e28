"""The fair clock's arithmetic (Store rule 9): ``max(now, the tenant's last key) + 1 / weight``, case by case.

``test_fairness.py`` checks the shares a backlog gets; these check the parts of the formula the shares alone
do not reach (mutation testing found them unchecked on SQLite): weights below 1, a tenant with no limits row
beside weighted ones, and a tenant's clock that is ahead of now carried from one batch into the next.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import math
import time
from collections import Counter

from scanq.models import Scan, TenantLimits
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, new_scan

EACH = 40


async def claim_first(store: Store, count: int) -> list[Scan]:
    claimed: list[Scan] = []
    while len(claimed) < count and (
        batch := await store.claim(worker_id="w1", limit=count - len(claimed), lease_s=LONG_LEASE_S)
    ):
        claimed.extend(batch)
    return claimed


async def test_a_weight_below_one_a_tenant_without_limits_and_a_heavy_one_share_by_their_steps(store: Store) -> None:
    # Steps of 1 / weight: 2.5 s for "slow" (0.4), 1 s for "plain" (no limits row: weight 1), 0.4 s for "fast" (2.5).
    await store.set_tenant_limits(limits=TenantLimits(tenant="slow", weight=0.4))
    await store.set_tenant_limits(limits=TenantLimits(tenant="fast", weight=2.5))
    news = [new_scan(tenant=tenant) for _ in range(EACH) for tenant in ("slow", "plain", "fast")]
    started = time.monotonic()
    await store.create_many(scans=news)  # one batch: one "now" for every key
    assert time.monotonic() - started < 5, "the expected counts below assume one now (or nearly)"

    claimed = await claim_first(store, 27)

    # Keys at most now + 7.5 (then ties): slow 3 (2.5, 5, 7.5), plain 7, fast 18 = 28; the first 27 hold all
    # but one of them. Treating 0.4 as 1 would give slow 7; a plain tenant stepping as another would shift 7.
    counts = Counter(scan.tenant for scan in claimed)
    assert len(claimed) == 27
    assert 2 <= counts["slow"] <= 3, counts
    assert 6 <= counts["plain"] <= 7, counts
    assert 17 <= counts["fast"] <= 18, counts


async def test_a_clock_ahead_of_now_carries_into_the_tenants_next_batch(store: Store) -> None:
    started = time.monotonic()
    first = [new_scan(tenant="a") for _ in range(EACH // 2)]
    await store.create_many(scans=first)  # keys now + 1 ... now + 20
    second = [new_scan(tenant="a") for _ in range(EACH // 2)]
    await store.create_many(scans=second)  # carried: now + 21 ... now + 40, not from now again
    other = [new_scan(tenant="b") for _ in range(EACH // 2)]
    await store.create_many(scans=other)  # b's own: (its now) + 1 ... + 20
    elapsed = time.monotonic() - started

    claimed = await claim_first(store, EACH)

    # The first 40 keys are a's first 20 and b's 20, but for b's keys that came later by the seconds between the
    # submits: at most that many of a's second batch get ahead of b's last ones. Were a's clock not carried,
    # its second batch would start from now again and take about a third of the first 40.
    from_second = sum(scan.scan_id in {new.scan_id for new in second} for scan in claimed)
    assert len(claimed) == EACH
    assert from_second <= math.ceil(elapsed) + 1, (from_second, elapsed)
    assert {new.scan_id for new in first} <= {scan.scan_id for scan in claimed}


async def test_single_submissions_one_by_one_each_move_the_tenants_clock(store: Store) -> None:
    # Steps of 50 s for "a" (weight 0.02) and 100 s for "b" (0.01): far longer than the submits take, so the
    # order below holds on a slow machine too. a's scans, each its own batch, get now + 50, + 100, + 150;
    # b's, submitted after them, now' + 100: after a's second, before its third. Were a's clock left behind
    # by a one-scan batch, a's keys would all be about now + 50 and b's scan would come last.
    await store.set_tenant_limits(limits=TenantLimits(tenant="a", weight=0.02))
    await store.set_tenant_limits(limits=TenantLimits(tenant="b", weight=0.01))
    a = [new_scan(tenant="a") for _ in range(3)]
    for new in a:
        await store.create(scan=new)
    b = new_scan(tenant="b")
    await store.create(scan=b)

    claimed = await claim_first(store, 4)

    assert [scan.scan_id for scan in claimed] == [a[0].scan_id, a[1].scan_id, b.scan_id, a[2].scan_id]


async def test_a_tenants_first_scan_waits_its_own_step(store: Store) -> None:
    # A scan's key is max(now, clock) + 1 / weight, the first one too: b (step 100 s) submits first and gets
    # now + 100; a (step 50 s), a moment later, now' + 50, and goes first. Keyed at now alone, b's scan
    # would be ahead.
    await store.set_tenant_limits(limits=TenantLimits(tenant="a", weight=0.02))
    await store.set_tenant_limits(limits=TenantLimits(tenant="b", weight=0.01))
    b = new_scan(tenant="b")
    await store.create(scan=b)
    a = new_scan(tenant="a")
    await store.create(scan=a)

    claimed = await claim_first(store, 2)

    assert [scan.scan_id for scan in claimed] == [a.scan_id, b.scan_id]
