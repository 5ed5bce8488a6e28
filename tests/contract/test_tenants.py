"""Tenants (Store rule 7) and tenant limits (rule 8): each tenant sees only its own scans, counts and keys.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import ScanFinished, ScanNotFound
from scanq.models import DEFAULT_TENANT, Actor, Finish, Outcome, Scan, ScanStatus, TenantLimits
from scanq.store import Store
from scanq.store.base import FINISHED_STATUSES, RETENTION_ROLE
from tests.contract.finished import BETWEEN_BATCHES_S, finished_at
from tests.contract.helpers import LONG_LEASE_S, StoreFactory, claim_one, lease_of, new_scan, now_ms

ALICE = Actor(token_id="tok_alice", token_name="alice's ci")
BOB = Actor(token_id="tok_bob")
TERM_S = 30.0
FAR_FUTURE = timedelta(days=3650)


def ids(scans: Sequence[Scan]) -> list[str]:
    return [scan.scan_id for scan in scans]


def newest_first(scans: Sequence[Scan]) -> list[str]:
    return sorted(ids(scans), reverse=True)


async def list_all(
    store: Store, *, tenant: str | None, limit: int = 50, status: ScanStatus | None = None
) -> list[Scan]:
    scans: list[Scan] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(tenant=tenant, status=status, limit=limit, cursor=cursor)
        scans.extend(page.scans)
        if page.next_cursor is None:
            return scans
        cursor = page.next_cursor


async def finish_in(store: Store, tenant: str, outcomes: Sequence[Outcome]) -> list[Scan]:
    """Create one scan of ``tenant`` per outcome, claim them and finish each with its outcome; the stored scans."""
    news = [new_scan(tenant=tenant) for _ in outcomes]
    await store.create_many(scans=news)
    claimed = {
        scan.scan_id: scan for scan in await store.claim(worker_id="w-fin", limit=len(news), lease_s=LONG_LEASE_S)
    }
    assert sorted(claimed) == sorted(new.scan_id for new in news), "other claimable scans are in the way"
    finishes = [
        Finish(
            lease=lease_of(claimed[new.scan_id]),
            outcome=outcome,
            result={} if outcome is Outcome.COMPLETE else None,
            error="failed" if outcome is Outcome.ERROR else None,
        )
        for new, outcome in zip(news, outcomes, strict=True)
    ]
    assert await store.finish(finishes=finishes) == [True] * len(finishes)
    return [await store.get(scan_id=new.scan_id) for new in news]


async def assert_counts_per_tenant(store: Store, expected: dict[str, Counter[ScanStatus]]) -> None:
    """``stats(tenant=T)`` is ``expected[T]`` and agrees with the stored scans; ``stats()`` is their sum."""
    total: Counter[ScanStatus] = Counter()
    for tenant, counts in expected.items():
        stats = await store.stats(tenant=tenant)
        stored = Counter(scan.status for scan in await list_all(store, tenant=tenant))
        assert stats.counts == {status: counts[status] for status in ScanStatus}, tenant
        assert stored == counts, tenant
        total += counts
    assert (await store.stats()).counts == {status: total[status] for status in ScanStatus}
    assert (await store.stats(tenant="nobody")).counts == dict.fromkeys(ScanStatus, 0)


# -- tenant and submitter are stored ------------------------------------------------------------------


async def test_tenant_and_submitter_are_stored_and_read_back_everywhere(store: Store) -> None:
    plain = await store.create(scan=new_scan())
    acme = await store.create(scan=new_scan(tenant="acme", submitted_by=ALICE))
    (globex,) = await store.create_many(scans=[new_scan(tenant="globex", submitted_by=BOB)])
    expected = {
        plain.scan.scan_id: (DEFAULT_TENANT, None),
        acme.scan.scan_id: ("acme", ALICE),
        globex.scan.scan_id: ("globex", BOB),
    }

    def who(scans: Sequence[Scan]) -> dict[str, tuple[str, Actor | None]]:
        return {scan.scan_id: (scan.tenant, scan.submitted_by) for scan in scans}

    created = who([plain.scan, acme.scan, globex.scan])
    got = who([await store.get(scan_id=scan_id) for scan_id in expected])
    listed = who((await store.list_scans()).scans)
    claimed = await store.claim(worker_id="w1", limit=3, lease_s=LONG_LEASE_S)

    assert created == got == listed == who(claimed) == expected
    assert all(scan.cancelled_by is None for scan in claimed)


async def test_a_scan_is_found_under_its_own_tenant_or_none(store: Store) -> None:
    scan = (await store.create(scan=new_scan(tenant="acme"))).scan

    assert (await store.get(scan_id=scan.scan_id, tenant="acme")).scan_id == scan.scan_id
    assert (await store.get(scan_id=scan.scan_id)).scan_id == scan.scan_id
    with pytest.raises(ScanNotFound):
        await store.get(scan_id=scan.scan_id, tenant="globex")
    with pytest.raises(ScanNotFound):
        await store.get(scan_id=scan.scan_id, tenant=DEFAULT_TENANT)


# -- cancel: another tenant's scan, who cancelled ---------------------------------------------------


async def test_cancelling_another_tenants_scan_is_not_found_and_writes_nothing(store: Store) -> None:
    await store.create(scan=new_scan(tenant="acme"))
    running = await claim_one(store)
    accepted = (await store.create(scan=new_scan(tenant="acme"))).scan
    before = {scan_id: await store.get(scan_id=scan_id) for scan_id in (running.scan_id, accepted.scan_id)}
    stats_before = await store.stats(tenant="acme")

    for scan_id in before:
        with pytest.raises(ScanNotFound):
            await store.cancel(scan_id=scan_id, tenant="globex", by=BOB)

    after = {scan_id: await store.get(scan_id=scan_id) for scan_id in before}
    assert after == before  # whole records: status, cancel_requested, cancelled_by None, updated_at
    assert all(scan.cancelled_by is None and not scan.cancel_requested for scan in after.values())
    assert await store.stats(tenant="acme") == stats_before


async def test_cancel_records_who_cancelled_an_accepted_scan(store: Store) -> None:
    scan = (await store.create(scan=new_scan(tenant="acme", submitted_by=BOB))).scan
    anonymous = (await store.create(scan=new_scan(tenant="acme"))).scan

    cancelled = await store.cancel(scan_id=scan.scan_id, tenant="acme", by=ALICE)
    await store.cancel(scan_id=anonymous.scan_id)
    stored = await store.get(scan_id=scan.scan_id)

    assert (cancelled.status, cancelled.cancelled_by) == (ScanStatus.CANCELLED, ALICE)
    assert (stored.status, stored.cancelled_by, stored.submitted_by) == (ScanStatus.CANCELLED, ALICE, BOB)
    assert (await store.get(scan_id=anonymous.scan_id)).cancelled_by is None


async def test_cancel_records_who_asked_a_running_scan_to_stop(store: Store) -> None:
    await store.create(scan=new_scan(tenant="acme"))
    scan = await claim_one(store)

    requested = await store.cancel(scan_id=scan.scan_id, tenant="acme", by=ALICE)
    stored = await store.get(scan_id=scan.scan_id)
    await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.CANCELLED)])
    final = await store.get(scan_id=scan.scan_id)

    assert (requested.status, requested.cancel_requested, requested.cancelled_by) == (ScanStatus.RUNNING, True, ALICE)
    assert (stored.cancel_requested, stored.cancelled_by) == (True, ALICE)
    assert (final.status, final.cancelled_by) == (ScanStatus.CANCELLED, ALICE)


async def test_a_refused_cancel_of_a_finished_scan_writes_nothing(store: Store) -> None:
    (complete,) = await finish_in(store, "acme", [Outcome.COMPLETE])
    cancelled = (await store.create(scan=new_scan(tenant="acme"))).scan
    await store.cancel(scan_id=cancelled.scan_id, by=ALICE)
    before = {scan_id: await store.get(scan_id=scan_id) for scan_id in (complete.scan_id, cancelled.scan_id)}

    for scan_id in before:
        with pytest.raises(ScanFinished):
            await store.cancel(scan_id=scan_id, tenant="acme", by=BOB)

    after = {scan_id: await store.get(scan_id=scan_id) for scan_id in before}
    assert after == before
    assert after[complete.scan_id].cancelled_by is None
    assert after[cancelled.scan_id].cancelled_by == ALICE


# -- list_scans per tenant ----------------------------------------------------------------------------


async def test_list_scans_of_a_tenant_shows_only_its_scans(store: Store) -> None:
    made: dict[str, list[Scan]] = {"acme": [], "globex": [], DEFAULT_TENANT: []}
    for i in range(9):
        tenant = list(made)[i % 3]
        made[tenant].append((await store.create(scan=new_scan(tenant=tenant))).scan)
    (running,) = await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S)  # the oldest: acme's first

    for tenant, scans in made.items():
        page = await store.list_scans(tenant=tenant)
        assert ids(page.scans) == newest_first(scans)
        assert page.next_cursor is None
    running_of_acme = await store.list_scans(tenant="acme", status=ScanStatus.RUNNING)
    assert ids(running_of_acme.scans) == [running.scan_id] == [made["acme"][0].scan_id]
    assert (await store.list_scans(tenant="globex", status=ScanStatus.RUNNING)).scans == []
    assert ids((await store.list_scans()).scans) == newest_first([s for scans in made.values() for s in scans])
    assert (await store.list_scans(tenant="nobody")).scans == []


async def test_paging_through_one_tenant_never_leaks_or_skips(store: Store) -> None:
    acme: list[Scan] = []
    for i in range(30):
        created = (await store.create(scan=new_scan(tenant="acme" if i % 3 else "globex"))).scan
        if created.tenant == "acme":
            acme.append(created)

    seen: list[Scan] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(tenant="acme", limit=4, cursor=cursor)
        assert len(page.scans) <= 4
        seen.extend(page.scans)
        # Newer scans of both tenants arrive between pages: they sort before the cursor.
        await store.create_many(scans=[new_scan(tenant="acme"), new_scan(tenant="globex")])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert ids(seen) == newest_first(acme)
    assert {scan.tenant for scan in seen} == {"acme"}


# -- stats per tenant ---------------------------------------------------------------------------------


async def test_stats_count_per_tenant_through_a_whole_life_and_add_up(store: Store) -> None:
    expected: dict[str, Counter[ScanStatus]] = {"acme": Counter(), "globex": Counter()}
    await assert_counts_per_tenant(store, expected)

    # acme's scans first by priority: between tenants of one priority the claim shares by fair key (rule 9).
    acme = [(await store.create(scan=new_scan(tenant="acme", priority=1))).scan for _ in range(4)]
    globex = [c.scan for c in await store.create_many(scans=[new_scan(tenant="globex") for _ in range(3)])]
    expected = {"acme": Counter({ScanStatus.ACCEPTED: 4}), "globex": Counter({ScanStatus.ACCEPTED: 3})}
    await assert_counts_per_tenant(store, expected)

    claimed = {s.scan_id: s for s in await store.claim(worker_id="w1", limit=5, lease_s=LONG_LEASE_S)}
    assert sorted(claimed) == sorted(ids([*acme, globex[0]]))  # acme's four, then globex's oldest
    expected["acme"] = Counter({ScanStatus.RUNNING: 4})
    expected["globex"] = Counter({ScanStatus.RUNNING: 1, ScanStatus.ACCEPTED: 2})
    await assert_counts_per_tenant(store, expected)

    await store.finish(
        finishes=[
            Finish(lease=lease_of(claimed[acme[0].scan_id]), outcome=Outcome.COMPLETE, result={}),
            Finish(lease=lease_of(claimed[acme[1].scan_id]), outcome=Outcome.ERROR, error="x"),
            Finish(lease=lease_of(claimed[globex[0].scan_id]), outcome=Outcome.COMPLETE, result={}),
        ]
    )
    await store.cancel(scan_id=globex[1].scan_id, tenant="globex")  # Accepted: at once
    await store.cancel(scan_id=acme[2].scan_id, tenant="acme")  # Running: asked to stop
    expected["acme"] = Counter({ScanStatus.COMPLETE: 1, ScanStatus.ERROR: 1, ScanStatus.RUNNING: 2})
    expected["globex"] = Counter({ScanStatus.COMPLETE: 1, ScanStatus.CANCELLED: 1, ScanStatus.ACCEPTED: 1})
    await assert_counts_per_tenant(store, expected)

    await store.finish(finishes=[Finish(lease=lease_of(claimed[acme[2].scan_id]), outcome=Outcome.CANCELLED)])
    await store.release(leases=[lease_of(claimed[acme[3].scan_id])])
    expected["acme"] = Counter(
        {ScanStatus.COMPLETE: 1, ScanStatus.ERROR: 1, ScanStatus.CANCELLED: 1, ScanStatus.ACCEPTED: 1}
    )
    await assert_counts_per_tenant(store, expected)

    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)
    cutoff = datetime.now(UTC) + FAR_FUTURE
    pruned = await store.prune(
        status=ScanStatus.COMPLETE, finished_before=cutoff, limit=100, owner="p1", tenant="globex"
    )
    assert ids(pruned) == [globex[0].scan_id]
    expected["globex"] = Counter({ScanStatus.CANCELLED: 1, ScanStatus.ACCEPTED: 1})
    await assert_counts_per_tenant(store, expected)

    pruned = await store.prune(status=ScanStatus.ERROR, finished_before=cutoff, limit=100, owner="p1")
    assert ids(pruned) == [acme[1].scan_id]
    expected["acme"] = Counter({ScanStatus.COMPLETE: 1, ScanStatus.CANCELLED: 1, ScanStatus.ACCEPTED: 1})
    await assert_counts_per_tenant(store, expected)


async def test_the_oldest_accepted_scan_is_per_tenant(store: Store) -> None:
    now = now_ms()
    a_old = new_scan(tenant="acme", created_at=now - timedelta(hours=3))
    a_new = new_scan(tenant="acme", created_at=now - timedelta(hours=1))
    g_mid = new_scan(tenant="globex", created_at=now - timedelta(hours=2))
    await store.create_many(scans=[a_old, a_new, g_mid])

    assert (await store.stats(tenant="acme")).oldest_accepted_at == a_old.created_at
    assert (await store.stats(tenant="globex")).oldest_accepted_at == g_mid.created_at
    assert (await store.stats()).oldest_accepted_at == a_old.created_at
    assert (await store.stats(tenant="nobody")).oldest_accepted_at is None

    await store.cancel(scan_id=a_old.scan_id)

    assert (await store.stats(tenant="acme")).oldest_accepted_at == a_new.created_at
    assert (await store.stats(tenant="globex")).oldest_accepted_at == g_mid.created_at
    assert (await store.stats()).oldest_accepted_at == g_mid.created_at

    await store.cancel(scan_id=g_mid.scan_id)

    assert (await store.stats(tenant="globex")).oldest_accepted_at is None
    assert (await store.stats()).oldest_accepted_at == a_new.created_at


# -- idempotency keys per tenant ----------------------------------------------------------------------


async def test_an_idempotency_key_is_unique_within_its_tenant_only(store: Store) -> None:
    acme = await store.create(scan=new_scan(tenant="acme", idempotency_key="k"))
    globex = await store.create(scan=new_scan(tenant="globex", idempotency_key="k"))
    acme_again = await store.create(scan=new_scan(tenant="acme", idempotency_key="k"))
    batch = await store.create_many(
        scans=[
            new_scan(tenant="acme", idempotency_key="k"),
            new_scan(tenant="globex", idempotency_key="k"),
            new_scan(tenant="initech", idempotency_key="k"),
            new_scan(tenant="initech", idempotency_key="k"),
        ]
    )

    assert acme.is_new and globex.is_new and not acme_again.is_new
    assert acme.scan.scan_id != globex.scan.scan_id
    assert acme_again.scan.scan_id == acme.scan.scan_id
    assert [created.is_new for created in batch] == [False, False, True, False]
    assert [created.scan.scan_id for created in batch[:2]] == [acme.scan.scan_id, globex.scan.scan_id]
    assert batch[3].scan.scan_id == batch[2].scan.scan_id
    assert [created.scan.tenant for created in batch] == ["acme", "globex", "initech", "initech"]
    for tenant in ("acme", "globex", "initech"):
        assert sum((await store.stats(tenant=tenant)).counts.values()) == 1


async def test_racing_creates_with_one_key_make_one_scan_per_tenant(store: Store, open_another: StoreFactory) -> None:
    other = await open_another()

    results = await asyncio.gather(
        *(
            target.create(scan=new_scan(tenant=tenant, idempotency_key="race"))
            for target in [store, other] * 5
            for tenant in ("acme", "globex")
        )
    )

    for tenant in ("acme", "globex"):
        mine = [result for result in results if result.scan.tenant == tenant]
        assert len(mine) == 10
        assert sum(result.is_new for result in mine) == 1
        assert len({result.scan.scan_id for result in mine}) == 1
        assert sum((await store.stats(tenant=tenant)).counts.values()) == 1
    assert sum((await store.stats()).counts.values()) == 2


# -- finished scans per tenant: throughput, export, retention ------------------------------------------


async def test_finished_counts_and_export_honour_the_tenant(store: Store) -> None:
    acme = await finish_in(store, "acme", [Outcome.COMPLETE, Outcome.ERROR, Outcome.COMPLETE])
    globex = await finish_in(store, "globex", [Outcome.CANCELLED, Outcome.COMPLETE])
    since = min(map(finished_at, [*acme, *globex])) - timedelta(minutes=1)
    since = since.replace(microsecond=since.microsecond // 1000 * 1000)

    async def one_hour(tenant: str | None = None) -> dict[ScanStatus, int]:
        buckets = await store.finished_counts(
            since=since, until=since + timedelta(hours=1), step_s=3600.0, tenant=tenant
        )
        assert len(buckets) == 1
        return buckets[0][1]

    assert await one_hour("acme") == {
        ScanStatus.COMPLETE: 2,
        ScanStatus.ERROR: 1,
        ScanStatus.CANCELLED: 0,
    }
    assert await one_hour("globex") == {
        ScanStatus.COMPLETE: 1,
        ScanStatus.ERROR: 0,
        ScanStatus.CANCELLED: 1,
    }
    assert await one_hour() == {
        ScanStatus.COMPLETE: 3,
        ScanStatus.ERROR: 1,
        ScanStatus.CANCELLED: 1,
    }
    assert await one_hour("nobody") == dict.fromkeys(FINISHED_STATUSES, 0)

    assert ids(await store.export_scans(tenant="acme")) == sorted(ids(acme))
    assert ids(await store.export_scans(tenant="globex")) == sorted(ids(globex))
    assert ids(await store.export_scans(tenant="acme", status=ScanStatus.COMPLETE, limit=1)) == [
        min(ids([acme[0], acme[2]]))
    ]
    assert ids(await store.export_scans()) == sorted(ids([*acme, *globex]))
    assert await store.export_scans(tenant="nobody") == []


async def test_prune_with_a_tenant_deletes_only_that_tenants_scans(store: Store) -> None:
    acme = await finish_in(store, "acme", [Outcome.COMPLETE] * 3)
    await asyncio.sleep(BETWEEN_BATCHES_S)
    globex = await finish_in(store, "globex", [Outcome.COMPLETE] * 2)
    cutoff = datetime.now(UTC) + FAR_FUTURE
    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)

    dry = await store.prune(
        status=ScanStatus.COMPLETE, finished_before=cutoff, limit=100, owner="p1", dry_run=True, tenant="globex"
    )
    named = await store.prune(
        status=ScanStatus.COMPLETE,
        finished_before=cutoff,
        limit=100,
        owner="p1",
        scan_ids=[acme[0].scan_id, globex[0].scan_id],  # acme's is named but not of this tenant: kept
        tenant="globex",
    )
    rest = await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=100, owner="p1", tenant="globex")
    none_left = await store.prune(
        status=ScanStatus.COMPLETE, finished_before=cutoff, limit=100, owner="p1", tenant="globex"
    )

    assert sorted(ids(dry)) == sorted(ids(globex))
    assert ids(named) == [globex[0].scan_id]
    assert ids(rest) == [globex[1].scan_id]
    assert none_left == []
    assert sorted(ids(await list_all(store, tenant=None))) == sorted(ids(acme))
    await assert_counts_per_tenant(store, {"acme": Counter({ScanStatus.COMPLETE: 3}), "globex": Counter()})


# -- tenant limits --------------------------------------------------------------------------------------


async def test_a_tenant_without_stored_limits_is_unlimited(store: Store) -> None:
    assert await store.get_tenant_limits(tenant="acme") == TenantLimits(tenant="acme")
    assert await store.list_tenant_limits() == []


async def test_setting_limits_replaces_every_field(store: Store) -> None:
    full = TenantLimits(tenant="acme", max_queued=100, rate_per_s=2.5, weight=3.0)
    await store.set_tenant_limits(limits=full)
    assert await store.get_tenant_limits(tenant="acme") == full

    only_rate = TenantLimits(tenant="acme", rate_per_s=0.25)
    await store.set_tenant_limits(limits=only_rate)

    assert await store.get_tenant_limits(tenant="acme") == only_rate  # max_queued back to None, weight to 1
    assert await store.get_tenant_limits(tenant="globex") == TenantLimits(tenant="globex")
    assert await store.list_tenant_limits() == [only_rate]


async def test_limits_are_listed_by_tenant_name(store: Store) -> None:
    stored = [
        TenantLimits(tenant="zeta", max_queued=1),
        TenantLimits(tenant="acme", weight=0.5),
        TenantLimits(tenant="mid", rate_per_s=10.0, max_queued=0),
    ]
    for limits in stored:
        await store.set_tenant_limits(limits=limits)

    assert await store.list_tenant_limits() == sorted(stored, key=lambda limits: limits.tenant)


async def test_limits_are_seen_by_another_store_on_the_same_database(store: Store, open_another: StoreFactory) -> None:
    other = await open_another()
    limits = TenantLimits(tenant="acme", max_queued=5, rate_per_s=1.5, weight=2.0)

    await store.set_tenant_limits(limits=limits)
    seen = await other.get_tenant_limits(tenant="acme")
    await other.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=6))

    assert seen == limits
    assert await store.get_tenant_limits(tenant="acme") == TenantLimits(tenant="acme", max_queued=6)
    assert await other.list_tenant_limits() == [TenantLimits(tenant="acme", max_queued=6)]
