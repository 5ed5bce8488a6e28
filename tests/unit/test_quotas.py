"""QuotaGuard on a MemoryStore: the queued limit from the store's counts, the per-process rate, the limits' cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from scanq import quotas
from scanq.exceptions import QuotaExceeded
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus, Stats, TenantLimits
from scanq.quotas import LIMITS_CACHE_S, QuotaGuard
from scanq.store.memory import MemoryStore
from tests.clocks import ManualClock


class CountingStore(MemoryStore):
    """Counts the reads a quota check makes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.stats_reads = 0
        self.limits_reads = 0

    async def stats(self, *, tenant: str | None = None) -> Stats:
        self.stats_reads += 1
        return await super().stats(tenant=tenant)

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        self.limits_reads += 1
        return await super().get_tenant_limits(tenant=tenant)


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    async with CountingStore(f"memory://{uuid.uuid4()}") as store:
        yield store


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    fake = ManualClock()
    # Only scanq.quotas' view of time: the event loop keeps the real clock.
    monkeypatch.setattr(quotas, "time", fake)
    return fake


async def add_scans(store: MemoryStore, tenant: str, count: int) -> list[str]:
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), tenant=tenant) for _ in range(count)]
    await store.create_many(scans=news)
    return [new.scan_id for new in news]


async def admitted(guard: QuotaGuard, tenant: str, times: int) -> int:
    """How many single submissions of ``tenant`` pass before the first refusal (at most ``times``)."""
    for done in range(times):
        try:
            await guard.admit(tenant)
        except QuotaExceeded:
            return done
    return times


async def test_a_tenant_without_limits_is_admitted_without_reading_its_counts(store: CountingStore) -> None:
    await add_scans(store, "acme", 5)
    guard = QuotaGuard(store)

    for _ in range(3):
        await guard.admit("acme", 1000)

    assert store.stats_reads == 0


async def test_a_tenant_is_admitted_up_to_max_queued_then_refused(store: CountingStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=3))
    guard = QuotaGuard(store)
    await add_scans(store, "acme", 2)

    await guard.admit("acme")
    await add_scans(store, "acme", 1)
    with pytest.raises(QuotaExceeded) as refused:
        await guard.admit("acme")

    assert "at most 3 unfinished scans" in refused.value.message
    assert "'acme'" in refused.value.message
    assert refused.value.retry_after_s > 0
    assert store.stats_reads == 2


async def test_running_scans_count_and_finished_ones_do_not(store: CountingStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=3))
    guard = QuotaGuard(store)
    ids = await add_scans(store, "acme", 5)
    claimed = [s.scan_id for s in await store.claim(worker_id="w", limit=3, lease_s=30)]
    done, failed = (Lease(scan_id=scan_id, worker_id="w", attempt=1) for scan_id in claimed[:2])
    await store.finish(
        finishes=[
            Finish(lease=done, outcome=Outcome.COMPLETE, result={}),
            Finish(lease=failed, outcome=Outcome.ERROR, error="boom"),
        ]
    )
    await store.cancel(scan_id=next(scan_id for scan_id in ids if scan_id not in claimed))
    counts = (await store.stats(tenant="acme")).counts
    assert [counts[s] for s in ScanStatus] == [1, 1, 1, 1, 1]  # Accepted, Running, Complete, Error, Cancelled

    await guard.admit("acme")
    await add_scans(store, "acme", 1)

    with pytest.raises(QuotaExceeded, match=r"Accepted \+ Running: 3 now"):
        await guard.admit("acme")


async def test_other_tenants_scans_do_not_count(store: CountingStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=2))
    guard = QuotaGuard(store)
    await add_scans(store, "other", 10)

    await guard.admit("acme", 2)


async def test_a_batch_crossing_the_queued_limit_is_refused_whole(store: CountingStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=5))
    guard = QuotaGuard(store)
    await add_scans(store, "acme", 3)

    with pytest.raises(QuotaExceeded, match=r"at most 5 unfinished scans.*3 more asked") as refused:
        await guard.admit("acme", 3)
    await guard.admit("acme", 2)

    assert refused.value.retry_after_s > 0


async def test_a_max_queued_of_zero_refuses_everything(store: CountingStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=0))

    with pytest.raises(QuotaExceeded):
        await QuotaGuard(store).admit("acme")


async def test_the_rate_allows_a_burst_of_one_seconds_worth_then_refuses(
    store: CountingStore, clock: ManualClock
) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", rate_per_s=4))
    guard = QuotaGuard(store)

    assert await admitted(guard, "acme", 10) == 4
    with pytest.raises(QuotaExceeded, match="4 scans per second") as refused:
        await guard.admit("acme")

    assert refused.value.retry_after_s == pytest.approx(1 / 4)
    assert store.stats_reads == 0  # a rate alone needs no counts


async def test_the_rate_refills_at_its_rate(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", rate_per_s=2))
    guard = QuotaGuard(store)
    assert await admitted(guard, "acme", 10) == 2

    clock.now += 0.5
    one_more = await admitted(guard, "acme", 10)
    clock.now += 10
    refilled = await admitted(guard, "acme", 10)

    assert one_more == 1
    assert refilled == 2  # the bucket holds one second's worth, however long it waited


async def test_a_refused_submission_takes_nothing_from_the_rate(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", rate_per_s=2))
    guard = QuotaGuard(store)
    await guard.admit("acme")

    with pytest.raises(QuotaExceeded) as refused:
        await guard.admit("acme", 2)
    await guard.admit("acme")

    assert refused.value.retry_after_s == pytest.approx(0.5)


async def test_a_batch_larger_than_one_seconds_worth_is_refused(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", rate_per_s=3))

    with pytest.raises(QuotaExceeded, match="a batch of 4 is more than one second's worth") as refused:
        await QuotaGuard(store).admit("acme", 4)

    assert refused.value.retry_after_s > 0


async def test_a_rate_under_one_still_admits_one_scan_then_waits(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", rate_per_s=0.25))
    guard = QuotaGuard(store)

    assert await admitted(guard, "acme", 3) == 1
    with pytest.raises(QuotaExceeded) as refused:
        await guard.admit("acme")
    clock.now += 4

    assert refused.value.retry_after_s == pytest.approx(4)
    assert await admitted(guard, "acme", 3) == 1


async def test_each_tenant_has_its_own_rate(store: CountingStore, clock: ManualClock) -> None:
    for tenant in ("acme", "other"):
        await store.set_tenant_limits(limits=TenantLimits(tenant=tenant, rate_per_s=2))
    guard = QuotaGuard(store)

    assert await admitted(guard, "acme", 10) == 2
    assert await admitted(guard, "other", 10) == 2


async def test_the_queued_limit_is_checked_before_the_rate_is_taken(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=1, rate_per_s=2))
    guard = QuotaGuard(store)
    await add_scans(store, "acme", 1)

    with pytest.raises(QuotaExceeded, match="unfinished"):
        await guard.admit("acme")
    await store.cancel(scan_id=(await store.list_scans()).scans[0].scan_id)

    await guard.admit("acme")  # the refused one above took nothing from the rate


async def test_limits_are_read_once_per_cache_period(store: CountingStore, clock: ManualClock) -> None:
    guard = QuotaGuard(store)

    for _ in range(5):
        await guard.admit("acme")
        clock.now += LIMITS_CACHE_S / 10

    assert store.limits_reads == 1


async def test_new_limits_apply_once_the_cache_period_passed(store: CountingStore, clock: ManualClock) -> None:
    guard = QuotaGuard(store)
    await add_scans(store, "acme", 2)
    await guard.admit("acme")

    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=2))
    clock.now += LIMITS_CACHE_S / 2
    await guard.admit("acme")  # still the cached "no limit"
    clock.now += LIMITS_CACHE_S / 2

    with pytest.raises(QuotaExceeded, match="at most 2 unfinished scans"):
        await guard.admit("acme")
    assert (await guard.limits("acme")).max_queued == 2


async def test_a_lifted_limit_applies_once_the_cache_period_passed(store: CountingStore, clock: ManualClock) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=0))
    guard = QuotaGuard(store)
    with pytest.raises(QuotaExceeded):
        await guard.admit("acme")

    await store.set_tenant_limits(limits=TenantLimits(tenant="acme"))
    clock.now += LIMITS_CACHE_S

    await guard.admit("acme")


class SlowLimitsStore(CountingStore):
    """Holds every limits read until ``gate`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = asyncio.Event()

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        self.limits_reads += 1
        await self.gate.wait()
        return await MemoryStore.get_tenant_limits(self, tenant=tenant)


@pytest.fixture
async def slow_store() -> AsyncIterator[SlowLimitsStore]:
    async with SlowLimitsStore(f"memory://{uuid.uuid4()}") as store:
        yield store


async def test_submissions_finding_the_cache_stale_together_share_one_read(slow_store: SlowLimitsStore) -> None:
    await slow_store.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=1))
    guard = QuotaGuard(slow_store)
    waiting = [asyncio.create_task(guard.admit("acme")) for _ in range(20)]
    await asyncio.sleep(0)
    slow_store.gate.set()

    await asyncio.gather(*waiting)  # 0 queued: each alone fits under max_queued=1

    assert slow_store.limits_reads == 1
    assert (await guard.limits("acme")).max_queued == 1
    assert slow_store.limits_reads == 1  # cached
