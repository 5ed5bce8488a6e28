"""The Store contract: every backend (the ``database_url`` fixture's params) must pass every test here.

Written only against ``scanq.store.base.Store``. Data stays small (hundreds of
rows) and leases short, so the suite is quick on the slowest backend too.
Timestamps are made at millisecond precision, the coarsest a backend keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scanq.exceptions import ScanFinished, ScanNotFound, ScanqError, StoreUnavailable, ValidationError
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, Scan, ScanStatus
from scanq.store import Store, open_store
from scanq.store.base import encode_cursor
from tests.contract.conftest import StoreFactory

LEASE_S = 0.3
LONG_LEASE_S = 30.0
DEADLINE_S = 10.0
# Many claimers on separate stores racing for one queue; sized for the slowest backend (SecantusDB).
RACE_CLAIMERS = 16
RACE_SCANS = 120
RACE_DEADLINE_S = 45.0
WAKE_PROBE_S = 0.2
# Clocks: the store may take "now" from a server on this machine; allow for rounding and scheduling.
CLOCK_SLACK = timedelta(seconds=2)


def now_ms() -> datetime:
    """Now, truncated to whole milliseconds so every backend stores it exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_scan(**fields: Any) -> NewScan:
    return NewScan(**{"scan_id": new_scan_id(), "created_at": now_ms(), **fields})


def lease_of(scan: Scan) -> Lease:
    assert scan.lease_owner is not None
    return Lease(scan_id=scan.scan_id, worker_id=scan.lease_owner, attempt=scan.attempt)


def assert_near(actual: datetime | None, expected: datetime) -> None:
    assert actual is not None
    assert actual.tzinfo is not None
    assert abs(actual - expected) <= CLOCK_SLACK, (actual, expected)


async def claim_one(store: Store, *, worker_id: str = "w1", lease_s: float = LONG_LEASE_S) -> Scan:
    claimed = await store.claim(worker_id=worker_id, limit=1, lease_s=lease_s)
    assert len(claimed) == 1
    return claimed[0]


async def requeue_when_expired(store: Store, *, count: int = 1) -> None:
    """Run the reaper until it has handled ``count`` expired leases (event-driven, with a deadline)."""
    handled = 0
    async with asyncio.timeout(DEADLINE_S):
        while handled < count:
            handled += await store.requeue_expired()
            if handled < count:
                await asyncio.sleep(0.05)
    assert handled == count


async def settle_wake_up(store: Store) -> None:
    """Wait until ``wait_for_work`` sleeps a whole timeout.

    A backend may return early while it opens its wake-up channel (work that came
    before it listened is claimable now); a test of the steady state starts after.
    """
    async with asyncio.timeout(DEADLINE_S):
        while True:
            started = time.monotonic()
            await store.wait_for_work(timeout_s=WAKE_PROBE_S)
            if time.monotonic() - started >= WAKE_PROBE_S * 0.8:
                return


async def all_scans(store: Store, *, status: ScanStatus | None = None, limit: int = 50) -> list[Scan]:
    scans: list[Scan] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(status=status, limit=limit, cursor=cursor)
        scans.extend(page.scans)
        if page.next_cursor is None:
            return scans
        cursor = page.next_cursor


# -- create / get ---------------------------------------------------------------------------------


async def test_create_then_get_returns_every_field(store: Store) -> None:
    new = new_scan(
        target="example.com",
        scanner="noop",
        options={"ports": [80, 443], "deep": {"x": True, "label": "ü"}},
        priority=7,
        max_attempts=5,
        available_at=now_ms() + timedelta(hours=1),
        idempotency_key="round-trip",
    )

    created = await store.create(scan=new)
    fetched = await store.get(scan_id=new.scan_id)

    assert created.is_new
    for scan in (created.scan, fetched):
        assert scan.scan_id == new.scan_id
        assert scan.status == ScanStatus.ACCEPTED
        assert scan.target == "example.com"
        assert scan.scanner == "noop"
        assert scan.options == {"ports": [80, 443], "deep": {"x": True, "label": "ü"}}
        assert scan.priority == 7
        assert scan.attempt == 0
        assert scan.max_attempts == 5
        assert scan.created_at == new.created_at
        assert scan.available_at == new.available_at
        assert scan.idempotency_key == "round-trip"
        assert_near(scan.updated_at, datetime.now(UTC))
        assert (scan.started_at, scan.finished_at, scan.lease_owner, scan.lease_expires_at) == (None,) * 4
        assert (scan.error, scan.result, scan.cancel_requested, scan.history) == (None, None, False, ())


async def test_defaults_make_a_scan_claimable_at_once(store: Store) -> None:
    new = new_scan()

    scan = (await store.create(scan=new)).scan

    assert (scan.target, scan.scanner, scan.options, scan.priority) == (None, "mock", {}, 0)
    assert scan.available_at == new.created_at
    assert (await store.get(scan_id=new.scan_id)).available_at == new.created_at


async def test_get_unknown_scan_raises_not_found(store: Store) -> None:
    with pytest.raises(ScanNotFound):
        await store.get(scan_id=new_scan_id())


async def test_created_scan_survives_close_and_reopen(database_url: str) -> None:
    new = new_scan(target="durable.example")
    async with open_store(database_url) as first:
        await first.create(scan=new)

    async with open_store(database_url) as second:
        scan = await second.get(scan_id=new.scan_id)

    assert (scan.target, scan.status) == ("durable.example", ScanStatus.ACCEPTED)


async def test_concurrent_creates_are_all_stored(store: Store) -> None:
    news = [new_scan() for _ in range(200)]

    results = await asyncio.gather(*(store.create(scan=new) for new in news))

    assert all(result.is_new for result in results)
    assert [result.scan.scan_id for result in results] == [new.scan_id for new in news]
    stored = await all_scans(store, limit=64)
    assert sorted(scan.scan_id for scan in stored) == sorted(new.scan_id for new in news)
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 200


async def test_create_many_is_all_or_none(store: Store) -> None:
    existing = new_scan()
    await store.create(scan=existing)
    fresh = [new_scan(), new_scan()]

    with pytest.raises(ScanqError) as raised:
        await store.create_many(scans=[*fresh, new_scan(scan_id=existing.scan_id)])
    assert not isinstance(raised.value, StoreUnavailable)
    twice = new_scan()
    with pytest.raises(ScanqError):
        await store.create_many(scans=[twice, new_scan(), twice])

    for new in [*fresh, twice]:
        with pytest.raises(ScanNotFound):
            await store.get(scan_id=new.scan_id)
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 1


async def test_create_many_stores_a_batch_in_order(store: Store) -> None:
    news = [new_scan(priority=i) for i in range(50)]

    results = await store.create_many(scans=news)

    assert [r.scan.scan_id for r in results] == [n.scan_id for n in news]
    assert all(r.is_new for r in results)
    assert [s.priority for s in await all_scans(store)] == list(reversed(range(50)))


async def test_duplicate_create_fails_only_itself(store: Store) -> None:
    existing = new_scan()
    await store.create(scan=existing)
    others = [new_scan() for _ in range(20)]

    results = await asyncio.gather(
        store.create(scan=new_scan(scan_id=existing.scan_id)),
        *(store.create(scan=new) for new in others),
        return_exceptions=True,
    )

    assert isinstance(results[0], ScanqError)
    assert all(not isinstance(result, BaseException) for result in results[1:])
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 21


# -- idempotency ----------------------------------------------------------------------------------


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


# -- claim ----------------------------------------------------------------------------------------


async def test_each_scan_is_claimed_exactly_once_by_racing_claimers(store: Store, open_another: StoreFactory) -> None:
    scan_ids = [
        created.scan.scan_id for created in await store.create_many(scans=[new_scan() for _ in range(RACE_SCANS)])
    ]
    claimers = [await open_another() for _ in range(RACE_CLAIMERS)]
    start = asyncio.Event()

    async def claim_all(claimer: Store, worker_id: str) -> list[str]:
        await start.wait()
        mine: list[str] = []
        while batch := await claimer.claim(worker_id=worker_id, limit=7, lease_s=LONG_LEASE_S):
            assert all(scan.lease_owner == worker_id and scan.attempt == 1 for scan in batch)
            mine.extend(scan.scan_id for scan in batch)
        return mine

    tasks = [asyncio.create_task(claim_all(claimer, f"w{i}")) for i, claimer in enumerate(claimers)]
    start.set()
    per_worker = await asyncio.wait_for(asyncio.gather(*tasks), RACE_DEADLINE_S)

    claimed = [scan_id for mine in per_worker for scan_id in mine]
    assert len(claimed) == RACE_SCANS
    assert set(claimed) == set(scan_ids)
    stats = await store.stats()
    assert (stats.counts[ScanStatus.ACCEPTED], stats.counts[ScanStatus.RUNNING]) == (0, RACE_SCANS)


async def test_claim_orders_by_priority_then_age(store: Store) -> None:
    news = [new_scan(priority=p) for p in (0, 5, 1, 5, 0, 1)]
    for new in news:  # one by one: ids are time-ordered, so this is also age order
        await store.create(scan=new)

    first = await store.claim(worker_id="w1", limit=3, lease_s=LONG_LEASE_S)
    rest = await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    expected = [news[i].scan_id for i in (1, 3, 2, 5, 0, 4)]
    assert [scan.scan_id for scan in first + rest] == expected


async def test_claim_skips_scans_not_yet_available(store: Store) -> None:
    later = new_scan(available_at=now_ms() + timedelta(minutes=5), priority=9)
    now = new_scan()
    await store.create_many(scans=[later, now])

    claimed = await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    assert [scan.scan_id for scan in claimed] == [now.scan_id]
    assert await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S) == []


async def test_claim_sets_lease_attempt_and_opens_history(store: Store) -> None:
    new = new_scan()
    await store.create(scan=new)

    scan = await claim_one(store, worker_id="worker-a", lease_s=LONG_LEASE_S)
    stored = await store.get(scan_id=new.scan_id)

    for seen in (scan, stored):
        assert (seen.status, seen.attempt, seen.lease_owner) == (ScanStatus.RUNNING, 1, "worker-a")
        assert_near(seen.started_at, datetime.now(UTC))
        assert seen.started_at is not None
        assert_near(seen.lease_expires_at, seen.started_at + timedelta(seconds=LONG_LEASE_S))
        assert len(seen.history) == 1
        entry = seen.history[0]
        assert (entry.attempt, entry.worker, entry.outcome, entry.finished_at, entry.error) == (
            1,
            "worker-a",
            None,
            None,
            None,
        )
        assert entry.started_at == seen.started_at


async def test_claim_of_an_empty_queue_returns_nothing(store: Store) -> None:
    assert await store.claim(worker_id="w1", limit=5, lease_s=LEASE_S) == []


# -- leases, heartbeats, fencing -------------------------------------------------------------------


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


async def test_a_scan_is_finished_at_most_once(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    done = Finish(lease=lease_of(scan), outcome=Outcome.COMPLETE, result={"n": 1})
    failed = Finish(lease=lease_of(scan), outcome=Outcome.ERROR, error="late")

    assert await store.finish(finishes=[done]) == [True]
    assert await store.finish(finishes=[failed]) == [False]
    assert await store.finish(finishes=[done]) == [False]
    stored = await store.get(scan_id=scan.scan_id)
    assert (stored.status, stored.result, stored.error) == (ScanStatus.COMPLETE, {"n": 1}, None)
    assert len(stored.history) == 1


async def test_one_finish_call_applies_many_outcomes(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(4)])
    a, b, c, d = await store.claim(worker_id="w1", limit=4, lease_s=LONG_LEASE_S)
    stale = dataclasses.replace(lease_of(d), worker_id="someone-else")

    applied = await store.finish(
        finishes=[
            Finish(lease=lease_of(a), outcome=Outcome.COMPLETE, result={"open_ports": [22]}),
            Finish(lease=lease_of(b), outcome=Outcome.ERROR, error="boom"),
            Finish(lease=lease_of(c), outcome=Outcome.CANCELLED),
            Finish(lease=stale, outcome=Outcome.COMPLETE, result={}),
        ]
    )

    assert applied == [True, True, True, False]
    statuses = [(await store.get(scan_id=s.scan_id)).status for s in (a, b, c, d)]
    assert statuses == [ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED, ScanStatus.RUNNING]


# -- requeue, retry, release ----------------------------------------------------------------------


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


async def test_retry_returns_the_scan_to_accepted_at_retry_at(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    retry_at = now_ms() + timedelta(minutes=5)

    applied = await store.finish(
        finishes=[Finish(lease=lease_of(scan), outcome=Outcome.RETRY, error="timeout", retry_at=retry_at)]
    )
    waiting = await store.get(scan_id=scan.scan_id)

    assert applied == [True]
    assert (waiting.status, waiting.attempt, waiting.lease_owner, waiting.finished_at) == (
        ScanStatus.ACCEPTED,
        1,
        None,
        None,
    )
    assert waiting.available_at == retry_at
    assert (waiting.history[0].outcome, waiting.history[0].error) == (Outcome.RETRY, "timeout")
    assert await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S) == []


async def test_a_due_retry_is_claimed_as_the_next_attempt(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store, worker_id="w1")
    await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.RETRY, error="flaky", retry_at=now_ms())])

    again = await claim_one(store, worker_id="w2")
    await store.finish(finishes=[Finish(lease=lease_of(again), outcome=Outcome.COMPLETE, result={"ok": True})])
    final = await store.get(scan_id=scan.scan_id)

    assert again.attempt == 2
    assert (final.status, final.attempt, final.result) == (ScanStatus.COMPLETE, 2, {"ok": True})
    assert [(e.attempt, e.worker, e.outcome, e.error) for e in final.history] == [
        (1, "w1", Outcome.RETRY, "flaky"),
        (2, "w2", Outcome.COMPLETE, None),
    ]


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


# -- cancel ---------------------------------------------------------------------------------------


async def test_cancel_an_accepted_scan_cancels_it_at_once(store: Store) -> None:
    await store.create(scan=new_scan())

    scan = (await store.create(scan=new_scan())).scan
    cancelled = await store.cancel(scan_id=scan.scan_id)

    assert cancelled.status == ScanStatus.CANCELLED
    assert_near(cancelled.finished_at, datetime.now(UTC))
    assert (await store.get(scan_id=scan.scan_id)).status == ScanStatus.CANCELLED
    claimed = await store.claim(worker_id="w1", limit=5, lease_s=LONG_LEASE_S)
    assert scan.scan_id not in {s.scan_id for s in claimed}


async def test_cancel_a_running_scan_asks_its_worker_to_stop(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)

    requested = await store.cancel(scan_id=scan.scan_id)
    again = await store.cancel(scan_id=scan.scan_id)
    stopped = await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.CANCELLED)])
    final = await store.get(scan_id=scan.scan_id)

    assert (requested.status, requested.cancel_requested, requested.lease_owner) == (ScanStatus.RUNNING, True, "w1")
    assert again.cancel_requested
    assert stopped == [True]
    assert final.status == ScanStatus.CANCELLED
    assert final.history[-1].outcome == Outcome.CANCELLED


async def test_cancel_a_finished_scan_raises_scan_finished(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.ERROR, error="no route")])
    cancelled = (await store.create(scan=new_scan())).scan
    await store.cancel(scan_id=cancelled.scan_id)

    for scan_id, status in ((scan.scan_id, ScanStatus.ERROR), (cancelled.scan_id, ScanStatus.CANCELLED)):
        with pytest.raises(ScanFinished) as raised:
            await store.cancel(scan_id=scan_id)
        assert (raised.value.scan_id, raised.value.status) == (scan_id, status)
    assert (await store.get(scan_id=scan.scan_id)).status == ScanStatus.ERROR


async def test_cancel_an_unknown_scan_raises_not_found(store: Store) -> None:
    with pytest.raises(ScanNotFound):
        await store.cancel(scan_id=new_scan_id())


# -- history --------------------------------------------------------------------------------------


async def test_history_records_worker_times_outcome_and_error(store: Store) -> None:
    await store.create_many(scans=[new_scan(), new_scan()])
    ok, bad = await store.claim(worker_id="w7", limit=2, lease_s=LONG_LEASE_S)

    await store.finish(
        finishes=[
            Finish(lease=lease_of(ok), outcome=Outcome.COMPLETE, result={"grade": "A"}),
            Finish(lease=lease_of(bad), outcome=Outcome.ERROR, error="connection refused"),
        ]
    )
    done = await store.get(scan_id=ok.scan_id)
    failed = await store.get(scan_id=bad.scan_id)

    assert (done.status, done.result, done.error) == (ScanStatus.COMPLETE, {"grade": "A"}, None)
    assert (failed.status, failed.result, failed.error) == (ScanStatus.ERROR, None, "connection refused")
    for scan, outcome, error in ((done, Outcome.COMPLETE, None), (failed, Outcome.ERROR, "connection refused")):
        assert scan.lease_owner is None and scan.lease_expires_at is None
        assert scan.finished_at is not None and scan.started_at is not None
        assert scan.finished_at >= scan.started_at
        (entry,) = scan.history
        assert (entry.attempt, entry.worker, entry.outcome, entry.error) == (1, "w7", outcome, error)
        assert entry.started_at == scan.started_at
        assert entry.finished_at == scan.finished_at


# -- listing --------------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_a_status_filter(store: Store) -> None:
    news = [new_scan() for _ in range(12)]
    for new in news:
        await store.create(scan=new)
    running = await store.claim(worker_id="w1", limit=4, lease_s=LONG_LEASE_S)

    first = await store.list_scans(limit=5)
    everything = await all_scans(store, limit=5)
    only_running = await all_scans(store, status=ScanStatus.RUNNING, limit=3)
    only_done = await store.list_scans(status=ScanStatus.COMPLETE)

    newest_first = [new.scan_id for new in reversed(news)]
    assert [s.scan_id for s in first.scans] == newest_first[:5]
    assert first.next_cursor is not None
    assert [s.scan_id for s in everything] == newest_first
    assert [s.scan_id for s in only_running] == sorted((s.scan_id for s in running), reverse=True)
    assert all(s.status == ScanStatus.RUNNING for s in only_running)
    assert (only_done.scans, only_done.next_cursor) == ([], None)


async def test_pagination_has_no_gaps_or_repeats_while_rows_are_inserted(store: Store) -> None:
    before = [new_scan() for _ in range(60)]
    for new in before:
        await store.create(scan=new)
    listing_started = asyncio.Event()

    async def insert_more() -> None:
        await listing_started.wait()
        for _ in range(60):
            await store.create(scan=new_scan())
            await asyncio.sleep(0)

    inserter = asyncio.create_task(insert_more())
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(limit=7, cursor=cursor)
        listing_started.set()
        seen.extend(scan.scan_id for scan in page.scans)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    await inserter

    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert set(seen) >= {new.scan_id for new in before}


async def test_a_bad_cursor_is_a_validation_error(store: Store) -> None:
    await store.create(scan=new_scan())

    for cursor in ("not a cursor!", encode_cursor("not-a-scan-id"), "%%%%"):
        with pytest.raises(ValidationError):
            await store.list_scans(cursor=cursor)


async def test_list_limit_is_bounded(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(3)])

    page = await store.list_scans(limit=0)

    assert len(page.scans) >= 1
    assert len((await store.list_scans(limit=10**9)).scans) == 3


# -- stats ----------------------------------------------------------------------------------------


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


# -- wake-up --------------------------------------------------------------------------------------


async def test_wait_for_work_wakes_soon_after_a_create_elsewhere(store: Store, open_another: StoreFactory) -> None:
    producer = await open_another()
    await settle_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_work(timeout_s=DEADLINE_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    started = time.monotonic()
    await producer.create(scan=new_scan())
    await asyncio.wait_for(waiting, DEADLINE_S)

    assert time.monotonic() - started < 2.0


async def test_wait_for_work_returns_at_its_timeout_when_nothing_happens(store: Store) -> None:
    await settle_wake_up(store)
    started = time.monotonic()

    await store.wait_for_work(timeout_s=0.3)

    assert 0.25 <= time.monotonic() - started < 2.0


async def test_ping_answers_on_an_open_store(store: Store) -> None:
    await store.ping()
