"""Retention: ``prune`` deletes finished scans past a cutoff in short batches, one leader at a time (``lead``).

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import ScanNotFound, ValidationError
from scanq.models import Finish, Outcome, Scan, ScanStatus
from scanq.store import Store
from scanq.store.base import RETENTION_ROLE
from tests.contract.finished import BETWEEN_BATCHES_S, finish_scans, finished_at, midpoint
from tests.contract.helpers import DEADLINE_S, LONG_LEASE_S, StoreFactory, all_scans, lease_of, new_scan

TERM_S = 30.0
SHORT_TERM_S = 0.5
BATCH = 100
FAR_FUTURE = timedelta(days=3650)


def ids(scans: list[Scan]) -> list[str]:
    return [scan.scan_id for scan in scans]


def retention_order(scans: list[Scan]) -> list[str]:
    return ids(sorted(scans, key=lambda scan: (finished_at(scan), scan.scan_id)))


async def assert_counts_exact(store: Store) -> Counter[ScanStatus]:
    """``stats`` agrees with the scans actually stored, status by status; returns the counts."""
    stored = Counter(scan.status for scan in await all_scans(store, limit=200))
    stats = await store.stats()
    assert stats.counts == {status: stored[status] for status in ScanStatus}
    return stored


async def add_live_scans(store: Store) -> tuple[Scan, Scan]:
    """One Accepted scan (due long ago) and one Running scan: retention must never touch them."""
    running_new, accepted_new = new_scan(), new_scan(created_at=datetime.now(UTC) - FAR_FUTURE)
    await store.create(scan=running_new)
    (running,) = await store.claim(worker_id="w-live", limit=1, lease_s=LONG_LEASE_S)
    accepted = (await store.create(scan=accepted_new)).scan
    return accepted, running


async def test_prune_deletes_one_status_finished_before_the_cutoff_and_keeps_counts_exact(store: Store) -> None:
    early = await finish_scans(store, [Outcome.COMPLETE, Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED])
    await asyncio.sleep(BETWEEN_BATCHES_S)
    late = await finish_scans(store, [Outcome.COMPLETE, Outcome.ERROR])
    accepted, running = await add_live_scans(store)
    cutoff = midpoint(early, late)
    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)

    pruned = await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="p1")

    assert ids(pruned) == retention_order(early[:2])
    assert [scan.status for scan in pruned] == [ScanStatus.COMPLETE] * 2
    assert pruned[0].result == {"n": 0} and pruned[0].history  # whole records, as they were
    for scan in early[:2]:
        with pytest.raises(ScanNotFound):
            await store.get(scan_id=scan.scan_id)
    kept = [*early[2:], *late, accepted, running]
    assert sorted(ids(await all_scans(store))) == sorted(ids(kept))
    assert await assert_counts_exact(store) == Counter(
        {
            ScanStatus.COMPLETE: 1,
            ScanStatus.ERROR: 2,
            ScanStatus.CANCELLED: 1,
            ScanStatus.ACCEPTED: 1,
            ScanStatus.RUNNING: 1,
        }
    )


async def test_accepted_and_running_scans_are_never_pruned(store: Store) -> None:
    finished = await finish_scans(store, [Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED])
    accepted, running = await add_live_scans(store)
    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)
    cutoff = datetime.now(UTC) + FAR_FUTURE

    for live in (ScanStatus.ACCEPTED, ScanStatus.RUNNING):
        with pytest.raises(ValidationError):
            await store.prune(status=live, finished_before=cutoff, limit=BATCH, owner="p1")
    pruned = [
        scan
        for status in (ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED)
        for scan in await store.prune(status=status, finished_before=cutoff, limit=BATCH, owner="p1")
    ]

    assert sorted(ids(pruned)) == sorted(ids(finished))
    assert sorted(ids(await all_scans(store))) == sorted([accepted.scan_id, running.scan_id])
    assert await assert_counts_exact(store) == Counter({ScanStatus.ACCEPTED: 1, ScanStatus.RUNNING: 1})


async def test_batches_are_bounded_and_taken_in_retention_order(store: Store) -> None:
    # Three scans created first but finished last: retention goes by finished_at, then scan_id.
    news = [new_scan() for _ in range(8)]
    await store.create_many(scans=news)
    claimed = {scan.scan_id: scan for scan in await store.claim(worker_id="w", limit=8, lease_s=LONG_LEASE_S)}
    first_ids, last_ids = [new.scan_id for new in news[3:]], [new.scan_id for new in news[:3]]
    for group in (first_ids, last_ids):
        done = [Finish(lease=lease_of(claimed[scan_id]), outcome=Outcome.COMPLETE, result={}) for scan_id in group]
        assert await store.finish(finishes=done) == [True] * len(done)
        await asyncio.sleep(BETWEEN_BATCHES_S)
    finished = [await store.get(scan_id=new.scan_id) for new in news]
    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)
    cutoff = max(map(finished_at, finished)) + timedelta(seconds=1)
    order = sorted(first_ids) + sorted(last_ids)
    assert retention_order(finished) == order

    batches = []
    while batch := await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=3, owner="p1"):
        batches.append(ids(batch))

    assert batches == [order[0:3], order[3:6], order[6:8]]
    assert await assert_counts_exact(store) == Counter()


async def test_a_dry_run_returns_the_batch_and_deletes_nothing(store: Store) -> None:
    finished = await finish_scans(store, [Outcome.ERROR] * 4)
    cutoff = max(map(finished_at, finished)) + timedelta(seconds=1)

    # No role needed (nobody holds it): a dry run deletes nothing.
    first = await store.prune(status=ScanStatus.ERROR, finished_before=cutoff, limit=3, owner="p1", dry_run=True)
    again = await store.prune(status=ScanStatus.ERROR, finished_before=cutoff, limit=3, owner="p1", dry_run=True)

    assert ids(first) == ids(again) == retention_order(finished)[:3]
    assert sorted(ids(await all_scans(store))) == sorted(ids(finished))
    assert await assert_counts_exact(store) == Counter({ScanStatus.ERROR: 4})


async def test_a_named_batch_deletes_only_those_scans_that_still_match(store: Store) -> None:
    finished = await finish_scans(store, [Outcome.CANCELLED] * 4)
    (other,) = await finish_scans(store, [Outcome.COMPLETE])
    assert await store.lead(role=RETENTION_ROLE, owner="p1", term_s=TERM_S)
    cutoff = max(finished_at(scan) for scan in (*finished, other)) + timedelta(seconds=1)
    batch = await store.prune(status=ScanStatus.CANCELLED, finished_before=cutoff, limit=2, owner="p1", dry_run=True)
    named = [*ids(batch), other.scan_id]  # a Complete scan named for a Cancelled batch stays

    pruned = await store.prune(
        status=ScanStatus.CANCELLED, finished_before=cutoff, limit=BATCH, owner="p1", scan_ids=named
    )

    assert ids(pruned) == ids(batch)
    assert sorted(ids(await all_scans(store))) == sorted([*retention_order(finished)[2:], other.scan_id])
    assert await assert_counts_exact(store) == Counter({ScanStatus.CANCELLED: 2, ScanStatus.COMPLETE: 1})


async def test_only_the_holder_of_the_retention_role_prunes(store: Store) -> None:
    finished = await finish_scans(store, [Outcome.COMPLETE] * 2)
    cutoff = max(map(finished_at, finished)) + timedelta(seconds=1)

    nobody = await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="p1")
    assert await store.lead(role=RETENTION_ROLE, owner="p2", term_s=TERM_S)
    not_p1 = await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="p1")

    assert nobody == not_p1 == []
    assert sorted(ids(await all_scans(store))) == sorted(ids(finished))
    assert await assert_counts_exact(store) == Counter({ScanStatus.COMPLETE: 2})


async def test_one_leader_at_a_time_across_stores_on_the_same_database(
    store: Store, open_another: StoreFactory
) -> None:
    other = await open_another()
    finished = await finish_scans(store, [Outcome.COMPLETE] * 2)
    cutoff = max(map(finished_at, finished)) + timedelta(seconds=1)

    assert await store.lead(role=RETENTION_ROLE, owner="a", term_s=TERM_S)
    assert not await other.lead(role=RETENTION_ROLE, owner="b", term_s=TERM_S)
    assert await store.lead(role=RETENTION_ROLE, owner="a", term_s=TERM_S)  # a renewal
    assert await other.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="b") == []
    assert await other.lead(role="another-role", owner="b", term_s=TERM_S)  # roles are independent

    await other.resign(role=RETENTION_ROLE, owner="b")  # not the holder: changes nothing
    assert not await other.lead(role=RETENTION_ROLE, owner="b", term_s=TERM_S)
    await store.resign(role=RETENTION_ROLE, owner="a")
    assert await other.lead(role=RETENTION_ROLE, owner="b", term_s=TERM_S)
    assert not await store.lead(role=RETENTION_ROLE, owner="a", term_s=TERM_S)

    assert await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="a") == []
    pruned = await other.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="b")
    assert sorted(ids(pruned)) == sorted(ids(finished))


async def test_a_term_not_renewed_hands_the_role_on(store: Store, open_another: StoreFactory) -> None:
    other = await open_another()
    await finish_scans(store, [Outcome.COMPLETE])
    assert await store.lead(role=RETENTION_ROLE, owner="dies", term_s=SHORT_TERM_S)

    async with asyncio.timeout(DEADLINE_S):
        while not await other.lead(role=RETENTION_ROLE, owner="next", term_s=TERM_S):
            await asyncio.sleep(0.05)

    cutoff = datetime.now(UTC) + FAR_FUTURE
    assert await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="dies") == []
    assert not await store.lead(role=RETENTION_ROLE, owner="dies", term_s=SHORT_TERM_S)
    assert len(await other.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=BATCH, owner="next")) == 1
