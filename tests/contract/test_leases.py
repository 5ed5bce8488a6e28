"""Leases: heartbeats, fencing of stale workers, the reaper of expired leases, and release.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, Outcome, Scan, ScanStatus
from scanq.store import Store
from tests.contract.helpers import (
    DEADLINE_S,
    LEASE_S,
    LONG_LEASE_S,
    assert_near,
    claim_one,
    lease_of,
    new_scan,
    requeue_when_expired,
)


async def test_heartbeat_extends_the_lease(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store, lease_s=LEASE_S)

    answer = await store.heartbeat(leases=[lease_of(scan)], lease_s=LONG_LEASE_S)
    await asyncio.sleep(LEASE_S + 0.1)

    assert (answer.lost, answer.cancel_requested) == (frozenset(), frozenset())
    assert await store.requeue_expired() == 0
    renewed = await store.get(scan_id=scan.scan_id)
    assert renewed.status == ScanStatus.RUNNING
    assert renewed.lease_expires_at is not None and scan.lease_expires_at is not None
    assert renewed.lease_expires_at > scan.lease_expires_at + timedelta(seconds=10)


async def test_heartbeat_reports_lost_leases_and_cancel_requests(store: Store) -> None:
    await store.create_many(scans=[new_scan(), new_scan()])
    kept, cancelled = await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S)
    await store.cancel(scan_id=cancelled.scan_id)
    stale = dataclasses.replace(lease_of(kept), attempt=0)
    other_worker = dataclasses.replace(lease_of(cancelled), worker_id="w2")
    unknown = Lease(scan_id=new_scan_id(), worker_id="w1", attempt=1)

    answer = await store.heartbeat(leases=[lease_of(kept), lease_of(cancelled)], lease_s=LONG_LEASE_S)
    refused = await store.heartbeat(leases=[stale, other_worker, unknown], lease_s=LONG_LEASE_S)

    assert answer.lost == frozenset()
    assert answer.cancel_requested == {cancelled.scan_id}
    assert refused.lost == {kept.scan_id, cancelled.scan_id, unknown.scan_id}
    assert refused.cancel_requested == frozenset()


async def test_a_stale_worker_cannot_touch_a_newer_attempt(store: Store) -> None:
    await store.create(scan=new_scan())
    old = await claim_one(store, worker_id="w1", lease_s=LEASE_S)
    await requeue_when_expired(store)
    new = await claim_one(store, worker_id="w2", lease_s=LONG_LEASE_S)

    stale_finish = await store.finish(finishes=[Finish(lease=lease_of(old), outcome=Outcome.COMPLETE, result={})])
    stale_beat = await store.heartbeat(leases=[lease_of(old)], lease_s=LONG_LEASE_S)
    stale_release = await store.release(leases=[lease_of(old)])

    assert (new.attempt, new.lease_owner) == (2, "w2")
    assert stale_finish == [False]
    assert stale_beat.lost == {old.scan_id}
    assert stale_release == 0
    current = await store.get(scan_id=old.scan_id)
    assert (current.status, current.lease_owner, current.attempt, current.result) == (
        ScanStatus.RUNNING,
        "w2",
        2,
        None,
    )
    assert current.lease_expires_at == new.lease_expires_at


async def reclaimed_by_the_same_worker(store: Store) -> tuple[Scan, Scan]:
    """Attempt 1 and attempt 2 of one scan, both claimed by ``w1``: its first lease expired and was reaped.

    One worker process is a common deployment: a stale outcome of its own older attempt must be
    told apart from the attempt it holds now by the attempt number alone.
    """
    await store.create(scan=new_scan())
    old = await claim_one(store, worker_id="w1", lease_s=LEASE_S)
    await requeue_when_expired(store)
    new = await claim_one(store, worker_id="w1", lease_s=LONG_LEASE_S)
    assert (old.attempt, new.attempt, new.lease_owner) == (1, 2, "w1")
    return old, new


async def assert_attempt_2_untouched(store: Store, new: Scan) -> None:
    current = await store.get(scan_id=new.scan_id)
    assert (current.status, current.lease_owner, current.attempt, current.result, current.finished_at) == (
        ScanStatus.RUNNING,
        "w1",
        2,
        None,
        None,
    )
    assert current.lease_expires_at == new.lease_expires_at
    assert [(e.attempt, e.worker, e.outcome) for e in current.history] == [
        (1, "w1", Outcome.LEASE_EXPIRED),
        (2, "w1", None),
    ]
    # The lease of attempt 2 is still the one that counts.
    assert (await store.heartbeat(leases=[lease_of(new)], lease_s=LONG_LEASE_S)).lost == frozenset()


async def test_the_same_worker_cannot_finish_its_newer_attempt_with_an_older_lease(store: Store) -> None:
    old, new = await reclaimed_by_the_same_worker(store)

    stale = await store.finish(finishes=[Finish(lease=lease_of(old), outcome=Outcome.COMPLETE, result={"old": 1})])

    assert stale == [False]
    await assert_attempt_2_untouched(store, new)


async def test_the_same_worker_cannot_renew_its_newer_attempt_with_an_older_lease(store: Store) -> None:
    old, new = await reclaimed_by_the_same_worker(store)

    stale = await store.heartbeat(leases=[lease_of(old)], lease_s=LONG_LEASE_S * 2)

    assert stale.lost == {old.scan_id}
    assert stale.cancel_requested == frozenset()
    await assert_attempt_2_untouched(store, new)


async def test_the_same_worker_cannot_release_its_newer_attempt_with_an_older_lease(store: Store) -> None:
    old, new = await reclaimed_by_the_same_worker(store)

    stale = await store.release(leases=[lease_of(old)])

    assert stale == 0
    await assert_attempt_2_untouched(store, new)


async def test_expired_leases_are_requeued_until_attempts_run_out(store: Store) -> None:
    await store.create(scan=new_scan(max_attempts=2))
    first = await claim_one(store, worker_id="w1", lease_s=LEASE_S)
    await requeue_when_expired(store)
    requeued = await store.get(scan_id=first.scan_id)
    second = await claim_one(store, worker_id="w2", lease_s=LEASE_S)
    await requeue_when_expired(store)
    final = await store.get(scan_id=first.scan_id)

    assert (requeued.status, requeued.attempt, requeued.lease_owner) == (ScanStatus.ACCEPTED, 1, None)
    assert requeued.history[0].outcome == Outcome.LEASE_EXPIRED
    assert second.attempt == 2
    assert (final.status, final.error, final.attempt) == (ScanStatus.ERROR, "lease expired", 2)
    assert final.lease_owner is None and final.lease_expires_at is None
    assert_near(final.finished_at, datetime.now(UTC))
    assert [(e.attempt, e.worker, e.outcome) for e in final.history] == [
        (1, "w1", Outcome.LEASE_EXPIRED),
        (2, "w2", Outcome.LEASE_EXPIRED),
    ]
    assert all(e.finished_at is not None and e.finished_at >= e.started_at for e in final.history)
    assert await store.requeue_expired() == 0


async def test_an_expired_scan_with_a_cancel_request_is_cancelled(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store, lease_s=LEASE_S)
    await store.cancel(scan_id=scan.scan_id)
    await requeue_when_expired(store)

    final = await store.get(scan_id=scan.scan_id)

    assert final.status == ScanStatus.CANCELLED
    assert final.finished_at is not None and final.lease_owner is None


async def test_requeue_expired_honours_its_limit_and_leaves_live_leases(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(4)])
    expiring = await store.claim(worker_id="w1", limit=3, lease_s=LEASE_S)
    live = await claim_one(store, worker_id="w2", lease_s=LONG_LEASE_S)
    await asyncio.sleep(LEASE_S + 0.1)

    async with asyncio.timeout(DEADLINE_S):
        while (first := await store.requeue_expired(limit=2)) == 0:
            await asyncio.sleep(0.05)
    await requeue_when_expired(store, count=len(expiring) - first)

    assert first <= 2
    assert (await store.get(scan_id=live.scan_id)).status == ScanStatus.RUNNING
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 3


async def test_release_returns_scans_without_counting_the_attempt(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store, worker_id="w1")

    released = await store.release(leases=[lease_of(scan)])
    back = await store.get(scan_id=scan.scan_id)
    again = await claim_one(store, worker_id="w2")

    assert released == 1
    assert (back.status, back.attempt, back.lease_owner, back.lease_expires_at) == (
        ScanStatus.ACCEPTED,
        0,
        None,
        None,
    )
    assert back.history[0].outcome == Outcome.RELEASED
    assert back.history[0].finished_at is not None
    assert again.attempt == 1
    assert [e.outcome for e in again.history] == [Outcome.RELEASED, None]
    assert await store.release(leases=[lease_of(scan)]) == 0


async def test_release_cancels_a_scan_whose_cancel_was_requested(store: Store) -> None:
    await store.create_many(scans=[new_scan(), new_scan()])
    wanted, unwanted = await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S)
    await store.cancel(scan_id=unwanted.scan_id)

    released = await store.release(leases=[lease_of(wanted), lease_of(unwanted)])
    back = await store.get(scan_id=wanted.scan_id)
    cancelled = await store.get(scan_id=unwanted.scan_id)
    stats = await store.stats()
    claimed = await store.claim(worker_id="w2", limit=5, lease_s=LONG_LEASE_S)

    assert released == 2
    assert (back.status, back.attempt, back.history[-1].outcome) == (ScanStatus.ACCEPTED, 0, Outcome.RELEASED)
    assert (cancelled.status, cancelled.attempt, cancelled.lease_owner, cancelled.lease_expires_at) == (
        ScanStatus.CANCELLED,
        1,
        None,
        None,
    )
    assert_near(cancelled.finished_at, datetime.now(UTC))
    assert [(e.worker, e.outcome) for e in cancelled.history] == [("w1", Outcome.CANCELLED)]
    assert cancelled.history[-1].finished_at is not None
    assert (stats.counts[ScanStatus.CANCELLED], stats.counts[ScanStatus.RUNNING]) == (1, 0)
    assert stats.counts[ScanStatus.ACCEPTED] == 1
    assert [s.scan_id for s in claimed] == [wanted.scan_id]
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 0
    assert await store.release(leases=[lease_of(unwanted)]) == 0
