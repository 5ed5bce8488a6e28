"""Fair share and politeness (Store rule 9): no tenant waits behind another's backlog, no target gets hammered.

Fair keys: each scan gets ``max(now, its tenant's last key) + 1 / weight`` at submission, and ``claim`` orders by
priority, then that key. Politeness: ``claim(max_per_target=N)`` never has more than N scans of one non-null
``target_key`` Running at once, counting every worker's. Each test submits in ``create_many`` batches; the tests
with thousands of scans run smaller on MongoDB (``per_backend``), with the same shape and bounds.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest

from scanq.models import Finish, NewScan, Outcome, Scan, ScanStatus, TenantLimits, TenantQueue
from scanq.store import Store
from tests.contract.helpers import (
    LEASE_S,
    LONG_LEASE_S,
    RACE_DEADLINE_S,
    StoreFactory,
    all_scans,
    assert_same_instant,
    lease_of,
    new_scan,
    now_ms,
    per_backend,
    requeue_when_expired,
)

CAP = 2
CLAIM_BATCH = 50


def ids(scans: Sequence[Scan] | Sequence[NewScan]) -> list[str]:
    return [scan.scan_id for scan in scans]


def per_target(scans: Sequence[Scan]) -> Counter[str | None]:
    return Counter(scan.target_key for scan in scans)


def complete(scan: Scan) -> Finish:
    return Finish(lease=lease_of(scan), outcome=Outcome.COMPLETE, result={})


async def submit(store: Store, news: Sequence[NewScan], *, batch: int = 1000) -> None:
    for start in range(0, len(news), batch):
        await store.create_many(scans=news[start : start + batch])


async def claim_all(store: Store, *, limit: int = CLAIM_BATCH, max_per_target: int | None = None) -> list[Scan]:
    """Claim until the claim comes back empty; every scan claimed, in claim order."""
    claimed: list[Scan] = []
    while batch := await store.claim(worker_id="w1", limit=limit, lease_s=LONG_LEASE_S, max_per_target=max_per_target):
        claimed.extend(batch)
    return claimed


async def claim_capped(store: Store, *, limit: int = 30, lease_s: float = LONG_LEASE_S) -> list[Scan]:
    return await store.claim(worker_id="w1", limit=limit, lease_s=lease_s, max_per_target=CAP)


# -- fair share across tenants -------------------------------------------------------------------------


async def test_a_tenants_backlog_does_not_hold_back_another_tenants_scans(store: Store, database_url: str) -> None:
    backlog = per_backend(database_url, fast=5000, slow=500)
    started = time.monotonic()
    await submit(store, [new_scan(tenant="a") for _ in range(backlog)], batch=backlog // 5)
    b = [new_scan(tenant="b") for _ in range(10)]
    await store.create_many(scans=b)
    elapsed = time.monotonic() - started
    # A's keys run from (A's first submit) + 1 to + backlog; B's are (B's submit) + 1 ... + 10. Ahead of B's last key
    # come B's 10 and A's keys up to it: at most 10 + the seconds between the two submits + 10. So 40, unless
    # submitting A's backlog took over 19 s (then the bound grows with it; without fair keys it is backlog + 10).
    bound = max(40, 2 * len(b) + math.ceil(elapsed) + 1)

    claimed = await store.claim(worker_id="w1", limit=bound, lease_s=LONG_LEASE_S)

    assert len(claimed) == bound
    assert set(ids(b)) <= set(ids(claimed))


@pytest.mark.slow_on_mongo
async def test_weights_share_the_claims_in_proportion(store: Store, database_url: str) -> None:
    each = per_backend(database_url, fast=3000, slow=120)
    per_batch = each // 6
    await store.set_tenant_limits(limits=TenantLimits(tenant="a", weight=2.0))
    await store.set_tenant_limits(limits=TenantLimits(tenant="b", weight=1.0))
    for _ in range(each // per_batch):  # both submit at once: their batches interleave
        await store.create_many(scans=[new_scan(tenant="a") for _ in range(per_batch)])
        await store.create_many(scans=[new_scan(tenant="b") for _ in range(per_batch)])

    claimed: list[Scan] = []
    while len(claimed) < each and (
        batch := await store.claim(worker_id="w1", limit=min(CLAIM_BATCH, each - len(claimed)), lease_s=LONG_LEASE_S)
    ):
        claimed.extend(batch)

    assert len(claimed) == each
    share_a = Counter(scan.tenant for scan in claimed)["a"] / len(claimed)
    assert abs(share_a - 2 / 3) <= 0.1 * 2 / 3, share_a


async def test_priority_wins_across_tenants_then_fair_key_within(store: Store) -> None:
    a = [new_scan(tenant="a", priority=p) for p in (0, 3, 0, 3, 0)]
    await store.create_many(scans=a)
    b = [new_scan(tenant="b", priority=5) for _ in range(2)]
    await store.create_many(scans=b)  # later fair keys than all of A's, but a higher priority

    claimed = await claim_all(store, limit=3)

    assert ids(claimed) == [*ids(b), a[1].scan_id, a[3].scan_id, a[0].scan_id, a[2].scan_id, a[4].scan_id]


async def test_a_tenants_scans_of_one_priority_are_claimed_in_submission_order(store: Store) -> None:
    one_by_one = [new_scan(tenant="a") for _ in range(3)]
    for new in one_by_one:
        await store.create(scan=new)
        await store.create(scan=new_scan(tenant="b"))  # another tenant submits in between
    made_first, made_second = new_scan(tenant="a"), new_scan(tenant="a")
    batch = [made_second, made_first]  # a batch takes keys in its own order, whatever its ids
    await store.create_many(scans=batch)

    claimed = await claim_all(store, limit=4)

    assert [scan.scan_id for scan in claimed if scan.tenant == "a"] == ids(one_by_one + batch)


async def test_a_scan_back_to_accepted_keeps_its_place(store: Store) -> None:
    first, *later = [new_scan(tenant="a", max_attempts=5) for _ in range(3)]
    await store.create_many(scans=[first, *later])

    async def claim_first(lease_s: float = LONG_LEASE_S) -> Scan:
        (scan,) = await store.claim(worker_id="w1", limit=1, lease_s=lease_s)
        assert scan.scan_id == first.scan_id
        return scan

    assert await store.release(leases=[lease_of(await claim_first())]) == 1
    retry = Finish(lease=lease_of(await claim_first()), outcome=Outcome.RETRY, error="flaky", retry_at=now_ms())
    assert await store.finish(finishes=[retry]) == [True]
    await claim_first(LEASE_S)  # and its lease expires
    await requeue_when_expired(store)
    await claim_first()

    assert ids(await claim_all(store)) == ids(later)


async def test_a_replayed_idempotency_key_takes_no_fair_key(store: Store) -> None:
    keyed = new_scan(tenant="a", idempotency_key="order-1")
    await store.create_many(scans=[keyed, new_scan(tenant="a")])
    replays = 30
    for _ in range(replays):
        again = await store.create(scan=new_scan(tenant="a", idempotency_key="order-1"))
        assert not again.is_new and again.scan.scan_id == keyed.scan_id
    after = new_scan(tenant="a")
    await store.create(scan=after)
    b = [new_scan(tenant="b") for _ in range(3)]
    await store.create_many(scans=b)

    claimed = ids(await claim_all(store, limit=2))

    # A's third key is at most its first + 3, before B's third (B came later). Had each replay taken a key, it
    # would be 30 further on: after all of B's, unless the replays took 30 s.
    assert claimed.index(after.scan_id) < claimed.index(b[-1].scan_id), claimed
    assert len(claimed) == 6


# -- politeness: the cap per target --------------------------------------------------------------------


async def test_claim_caps_running_scans_per_target_and_goes_on_to_others(store: Store) -> None:
    news = [new_scan(target_key=key) for key in ("a.example", "b.example", None) for _ in range(10)]
    await store.create_many(scans=news)

    claimed = await claim_capped(store, limit=30)

    assert per_target(claimed) == {"a.example": CAP, "b.example": CAP, None: 10}
    waiting = await all_scans(store, status=ScanStatus.ACCEPTED)
    assert per_target(waiting) == {"a.example": 10 - CAP, "b.example": 10 - CAP}
    assert all(scan.attempt == 0 and scan.history == () for scan in waiting)  # skipped, never claimed
    assert await claim_capped(store) == []


async def test_the_cap_counts_every_workers_running_scans(store: Store, open_another: StoreFactory) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(5)])
    other = await open_another()

    mine = await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S, max_per_target=CAP)
    theirs = await other.claim(worker_id="w2", limit=5, lease_s=LONG_LEASE_S, max_per_target=CAP)

    assert (len(mine), len(theirs)) == (1, CAP - 1)
    assert await store.claim(worker_id="w1", limit=5, lease_s=LONG_LEASE_S, max_per_target=CAP) == []


async def test_finishing_a_scan_frees_its_target_slot(store: Store) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(10)])
    done, retried = await claim_capped(store)

    assert await store.finish(finishes=[complete(done)]) == [True]
    assert per_target(await claim_capped(store)) == {"a.example": 1}
    retry = Finish(lease=lease_of(retried), outcome=Outcome.RETRY, error="flaky", retry_at=now_ms())
    assert await store.finish(finishes=[retry]) == [True]
    assert ids(await claim_capped(store)) == [retried.scan_id]  # the freed slot; the retry keeps its place
    assert await claim_capped(store) == []


async def test_an_expired_lease_frees_its_target_slot(store: Store) -> None:
    last_try = new_scan(target_key="a.example", max_attempts=1)
    await store.create_many(scans=[last_try, *(new_scan(target_key="a.example") for _ in range(3))])
    assert len(await claim_capped(store, lease_s=LEASE_S)) == CAP
    assert await claim_capped(store) == []

    await requeue_when_expired(store, count=CAP)  # one back to Accepted, one to Error: both leave Running

    assert (await store.get(scan_id=last_try.scan_id)).status == ScanStatus.ERROR
    assert len(await claim_capped(store)) == CAP


async def test_release_frees_its_target_slot(store: Store) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(4)])
    kept, cancelled = await claim_capped(store)
    await store.cancel(scan_id=cancelled.scan_id)

    assert await store.release(leases=[lease_of(kept), lease_of(cancelled)]) == 2  # Accepted and Cancelled

    assert (await store.get(scan_id=cancelled.scan_id)).status == ScanStatus.CANCELLED
    again = await claim_capped(store)
    assert len(again) == CAP and kept.scan_id in ids(again)


async def test_a_cancelled_running_scan_holds_its_slot_until_it_finishes(store: Store) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(4)])
    running, _ = await claim_capped(store)

    await store.cancel(scan_id=running.scan_id)
    assert await claim_capped(store) == []  # cancel requested: still Running, still counted
    stop = Finish(lease=lease_of(running), outcome=Outcome.CANCELLED, error="cancelled")
    assert await store.finish(finishes=[stop]) == [True]

    assert per_target(await claim_capped(store)) == {"a.example": 1}


async def test_a_refused_finish_frees_no_slot(store: Store) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(3)])
    stale = await claim_capped(store, lease_s=LEASE_S)
    await requeue_when_expired(store, count=CAP)
    assert len(await claim_capped(store)) == CAP  # the same two, attempt 2

    assert await store.finish(finishes=[complete(scan) for scan in stale]) == [False, False]

    assert await claim_capped(store) == []


async def test_no_cap_by_default(store: Store) -> None:
    await store.create_many(scans=[new_scan(target_key="a.example") for _ in range(10)])
    assert len(await claim_capped(store)) == CAP

    uncapped = await store.claim(worker_id="w1", limit=30, lease_s=LONG_LEASE_S)

    assert per_target(uncapped) == {"a.example": 10 - CAP}


@pytest.mark.slow_on_mongo
async def test_the_cap_holds_under_racing_claimers(store: Store, open_another: StoreFactory, database_url: str) -> None:
    total = per_backend(database_url, fast=200, slow=100)
    targets = [f"t{i}.example" for i in range(5)]
    news = [new_scan(target_key=target) for target in targets for _ in range(total // len(targets))]
    await store.create_many(scans=news)  # grouped by target: each claim must skip the capped ones ahead
    claimers = [await open_another() for _ in range(8)]
    # Claimed and not yet being finished: each of these is Running in the store right now (a finish is only
    # counted once it is sent, so the count never includes a scan that might have left Running).
    running: Counter[str | None] = Counter()
    peak: Counter[str | None] = Counter()
    claimed: list[str] = []
    start = asyncio.Event()

    async def work(claimer: Store, worker_id: str) -> None:
        await start.wait()
        while len(claimed) < total or running.total():
            batch = await claimer.claim(worker_id=worker_id, limit=5, lease_s=LONG_LEASE_S, max_per_target=CAP)
            claimed.extend(ids(batch))
            running.update(per_target(batch))
            for target in per_target(batch):
                peak[target] = max(peak[target], running[target])
            if not batch:
                await asyncio.sleep(0.02)
                continue
            await asyncio.sleep(0.02)  # hold the slots while the others claim
            running.subtract(per_target(batch))
            assert await claimer.finish(finishes=[complete(scan) for scan in batch]) == [True] * len(batch)

    tasks = [asyncio.create_task(work(claimer, f"w{i}")) for i, claimer in enumerate(claimers)]
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), RACE_DEADLINE_S)

    assert max(peak.values()) == CAP, peak  # reached, never passed
    assert sorted(claimed) == sorted(ids(news))  # every scan, each once
    assert (await store.stats()).counts[ScanStatus.COMPLETE] == total


async def test_target_key_is_stored_and_read_back(store: Store) -> None:
    news = [new_scan(target_key="a.example"), new_scan()]
    created = [answer.scan for answer in await store.create_many(scans=news)]
    expected = {new.scan_id: new.target_key for new in news}

    def keys(scans: Sequence[Scan]) -> dict[str, str | None]:
        return {scan.scan_id: scan.target_key for scan in scans}

    got = keys([await store.get(scan_id=scan_id) for scan_id in expected])
    listed = keys((await store.list_scans()).scans)
    claimed = keys(await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S, max_per_target=CAP))

    assert keys(created) == got == listed == claimed == expected


# -- the queue per tenant ------------------------------------------------------------------------------


async def test_tenant_queues_count_waiting_and_running_scans_per_tenant(store: Store) -> None:
    base = now_ms()

    def at(minutes_ago: int, tenant: str, *, running: bool = False) -> NewScan:
        # The scans to run (or to finish) get priority 9, so one claim takes exactly those.
        return new_scan(tenant=tenant, created_at=base - timedelta(minutes=minutes_ago), priority=9 if running else 0)

    big = [at(10, "big", running=True), at(5, "big"), at(4, "big"), at(3, "big")]
    alpha = [at(8, "alpha"), at(2, "alpha"), at(9, "alpha", running=True)]  # the last one finishes
    beta = [at(1, "beta"), at(7, "beta")]
    gamma = [at(6, "gamma", running=True)]
    done = [at(20, "done", running=True)]  # finishes
    cancelled = [at(30, "cancelled")]
    await store.create_many(scans=big + alpha + beta + gamma + done + cancelled)
    claimed = {scan.tenant: scan for scan in await store.claim(worker_id="w1", limit=4, lease_s=LONG_LEASE_S)}
    assert sorted(claimed) == ["alpha", "big", "done", "gamma"]
    assert await store.finish(finishes=[complete(claimed["alpha"]), complete(claimed["done"])]) == [True, True]
    await store.cancel(scan_id=cancelled[0].scan_id)

    queues = await store.tenant_queues()

    expected = [
        TenantQueue(tenant="big", accepted=3, running=1, oldest_accepted_at=big[1].created_at),
        TenantQueue(tenant="alpha", accepted=2, running=0, oldest_accepted_at=alpha[0].created_at),
        TenantQueue(tenant="beta", accepted=2, running=0, oldest_accepted_at=beta[1].created_at),
        TenantQueue(tenant="gamma", accepted=0, running=1, oldest_accepted_at=None),
    ]
    assert [(q.tenant, q.accepted, q.running) for q in queues] == [(q.tenant, q.accepted, q.running) for q in expected]
    for got, want in zip(queues, expected, strict=True):
        assert_same_instant(got.oldest_accepted_at, want.oldest_accepted_at)
    assert [q.tenant for q in await store.tenant_queues(limit=2)] == ["big", "alpha"]


async def test_tenant_queues_of_an_idle_store_is_empty(store: Store) -> None:
    await store.create(scan=new_scan(tenant="a"))
    await store.cancel(scan_id=(await store.list_scans()).scans[0].scan_id)

    assert await store.tenant_queues() == []
