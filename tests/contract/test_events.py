"""The event log (Store rule 10): one event per status transition, read in one order, waited for, pruned.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import ScanFinished, ValidationError
from scanq.models import (
    DeliveryOutcome,
    DeliveryStatus,
    EventType,
    Finish,
    Lease,
    Outcome,
    ScanStatus,
)
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE, WEBHOOK_ROLE
from tests.contract.events import (
    DISPATCHER,
    FAR_FUTURE,
    PRUNER,
    ROLE_TERM_S,
    assert_event,
    claim_deliveries_until,
    dispatch_all,
    lead_retention,
    new_endpoint,
    read_all_events,
    result_of,
    settled_events,
    steps,
)
from tests.contract.finished import BETWEEN_BATCHES_S, finish_scans
from tests.contract.helpers import (
    DEADLINE_S,
    LEASE_S,
    LONG_LEASE_S,
    WAKE_PROBE_S,
    StoreFactory,
    claim_one,
    lease_of,
    new_scan,
    requeue_when_expired,
)

# As in test_wake_up: a wait that ends within the deadline was woken, it did not time out.
LONG_WAIT_S = DEADLINE_S * 6
A = ScanStatus.ACCEPTED
R = ScanStatus.RUNNING


async def settle_event_wake_up(store: Store) -> None:
    """Wait until ``wait_for_events`` sleeps a whole probe (an early return is allowed while it sets up)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            started = time.monotonic()
            await store.wait_for_events(timeout_s=WAKE_PROBE_S)
            if time.monotonic() - started >= WAKE_PROBE_S * 0.8:
                return


# -- one event per transition ---------------------------------------------------------------------


async def test_a_created_scan_records_one_accepted_event(store: Store) -> None:
    created = (await store.create(scan=new_scan(tenant="acme"))).scan

    (event,) = await settled_events(store, count=1)

    assert_event(event, created, ScanStatus.ACCEPTED)
    assert event.attempt == 0
    assert event.type is EventType.ACCEPTED


async def test_a_batch_records_one_accepted_event_per_new_scan(store: Store) -> None:
    """Every scan of a batch gets its event; their order within the batch is the store's (not asserted)."""
    news = [new_scan(tenant="acme" if i % 2 else "other") for i in range(5)]
    created = {c.scan.scan_id: c.scan for c in await store.create_many(scans=news)}

    events = await settled_events(store, count=5)

    assert sorted(event.scan_id for event in events) == sorted(created)
    for event in events:
        assert_event(event, created[event.scan_id], ScanStatus.ACCEPTED)
    assert len({event.event_id for event in events}) == 5


async def test_an_idempotent_replay_records_no_event(store: Store) -> None:
    first = (await store.create(scan=new_scan(idempotency_key="k1"))).scan
    replay = await store.create(scan=new_scan(idempotency_key="k1"))
    assert not replay.is_new
    new = new_scan(idempotency_key="k2")
    answers = await store.create_many(scans=[new_scan(idempotency_key="k1"), new])
    assert [a.is_new for a in answers] == [False, True]

    events = await settled_events(store, count=2)

    assert [event.scan_id for event in events] == [first.scan_id, new.scan_id]


async def test_every_transition_of_a_retried_scan_records_its_event_in_order(store: Store) -> None:
    created = (await store.create(scan=new_scan(tenant="acme", max_attempts=3))).scan
    first = await claim_one(store)
    assert await store.finish(finishes=[Finish(lease=lease_of(first), outcome=Outcome.RETRY, error="flaky")]) == [True]
    retried = await store.get(scan_id=created.scan_id)
    second = await claim_one(store)
    done = Finish(lease=lease_of(second), outcome=Outcome.COMPLETE, result={"ok": True})
    assert await store.finish(finishes=[done]) == [True]
    complete = await store.get(scan_id=created.scan_id)

    events = await settled_events(store, count=5)

    assert steps(events, created.scan_id) == [(A, 0), (R, 1), (A, 1), (R, 2), (ScanStatus.COMPLETE, 2)]
    for event, scan in zip(events, [created, first, retried, second, complete], strict=True):
        assert_event(event, scan, scan.status)
    assert [event.type for event in events] == [
        EventType.ACCEPTED,
        EventType.STARTED,
        EventType.ACCEPTED,
        EventType.STARTED,
        EventType.COMPLETED,
    ]


async def test_finishing_records_the_status_the_outcome_leads_to(store: Store) -> None:
    outcomes = [Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED]
    finished = await finish_scans(store, outcomes)

    events = await settled_events(store, count=9)

    for scan, status in zip(finished, [ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED], strict=True):
        assert steps(events, scan.scan_id) == [(A, 0), (R, 1), (status, 1)]
        (last,) = [event for event in events if event.scan_id == scan.scan_id and event.status == status]
        assert_event(last, scan, status)
    assert {event.type for event in events if event.status.is_terminal} == {
        EventType.COMPLETED,
        EventType.FAILED,
        EventType.CANCELLED,
    }


async def test_an_expired_lease_records_accepted_error_or_cancelled(store: Store) -> None:
    """The reaper's three ends: back to Accepted (attempts left), Error (none left), Cancelled (cancel requested)."""
    again, spent, stopped = new_scan(max_attempts=3), new_scan(max_attempts=1), new_scan(max_attempts=3)
    await store.create_many(scans=[again, spent, stopped])
    assert len(await store.claim(worker_id="w1", limit=3, lease_s=LEASE_S)) == 3
    await store.cancel(scan_id=stopped.scan_id)  # a request only: no event

    await requeue_when_expired(store, count=3)

    events = await settled_events(store, count=9)
    expected = {again.scan_id: A, spent.scan_id: ScanStatus.ERROR, stopped.scan_id: ScanStatus.CANCELLED}
    for scan_id, status in expected.items():
        assert steps(events, scan_id) == [(A, 0), (R, 1), (status, 1)]
        (last,) = [event for event in events if event.scan_id == scan_id][2:]
        assert_event(last, await store.get(scan_id=scan_id), status)


async def test_a_release_records_accepted_with_the_attempt_given_back_or_cancelled(store: Store) -> None:
    handed_back, stopped = new_scan(), new_scan()
    await store.create_many(scans=[handed_back, stopped])
    claimed = await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S)
    await store.cancel(scan_id=stopped.scan_id)

    assert await store.release(leases=[lease_of(scan) for scan in claimed]) == 2

    events = await settled_events(store, count=6)
    assert steps(events, handed_back.scan_id) == [(A, 0), (R, 1), (A, 0)]
    assert steps(events, stopped.scan_id) == [(A, 0), (R, 1), (ScanStatus.CANCELLED, 1)]
    for scan_id, status in ((handed_back.scan_id, A), (stopped.scan_id, ScanStatus.CANCELLED)):
        last = [event for event in events if event.scan_id == scan_id][-1]
        assert_event(last, await store.get(scan_id=scan_id), status)


async def test_cancel_records_cancelled_for_an_accepted_scan_and_nothing_for_a_running_one(store: Store) -> None:
    await store.create(scan=new_scan())
    running = await claim_one(store)
    accepted = (await store.create(scan=new_scan())).scan

    cancelled = await store.cancel(scan_id=accepted.scan_id)
    requested = await store.cancel(scan_id=running.scan_id)
    assert requested.status == R and requested.cancel_requested
    marker = (await store.create(scan=new_scan())).scan  # settles after everything above

    events = await settled_events(store, count=5)
    assert events[-1].scan_id == marker.scan_id
    assert steps(events, accepted.scan_id) == [(A, 0), (ScanStatus.CANCELLED, 0)]
    assert_event([e for e in events if e.scan_id == accepted.scan_id][-1], cancelled, ScanStatus.CANCELLED)
    assert steps(events, running.scan_id) == [(A, 0), (R, 1)]

    stop = Finish(lease=lease_of(running), outcome=Outcome.CANCELLED)
    assert await store.finish(finishes=[stop]) == [True]
    events = await settled_events(store, count=6)
    assert steps(events, running.scan_id) == [(A, 0), (R, 1), (ScanStatus.CANCELLED, 1)]


async def test_refused_and_status_keeping_writes_record_nothing(store: Store) -> None:
    """A heartbeat, a fenced-off finish or release and a cancel of a finished scan change no status: no event."""
    await store.create(scan=new_scan())
    running = await claim_one(store, lease_s=LONG_LEASE_S)
    (done,) = await finish_scans(store, [Outcome.COMPLETE])
    stale = Lease(scan_id=running.scan_id, worker_id="someone-else", attempt=running.attempt)
    wrong_attempt = Lease(scan_id=running.scan_id, worker_id="w1", attempt=running.attempt + 1)

    await store.heartbeat(leases=[lease_of(running)], lease_s=LONG_LEASE_S)
    assert await store.finish(finishes=[Finish(lease=stale, outcome=Outcome.COMPLETE, result={})]) == [False]
    assert await store.release(leases=[wrong_attempt]) == 0
    with pytest.raises(ScanFinished):
        await store.cancel(scan_id=done.scan_id)
    marker = (await store.create(scan=new_scan())).scan

    events = await settled_events(store, count=6)

    assert [event.scan_id for event in events][-1] == marker.scan_id
    assert steps(events, running.scan_id) == [(A, 0), (R, 1)]
    assert steps(events, done.scan_id) == [(A, 0), (R, 1), (ScanStatus.COMPLETE, 1)]
    assert len(events) == 6


# -- reading: order, continuation, filters, limit, head -------------------------------------------------


async def test_events_come_in_one_order_and_continue_after_any_of_them(store: Store) -> None:
    news = [new_scan() for _ in range(3)]
    for new in news:
        await store.create(scan=new)
    await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S)
    running = await store.claim(worker_id="w2", limit=1, lease_s=LONG_LEASE_S)
    await store.finish(finishes=[Finish(lease=lease_of(running[0]), outcome=Outcome.ERROR, error="x")])

    events = await settled_events(store, count=7)

    assert len(events) == 7
    assert len({event.event_id for event in events}) == 7
    assert [event.scan_id for event in events[:3]] == [new.scan_id for new in news]  # written one after another
    assert [event.status for event in events] == [A, A, A, R, R, R, ScanStatus.ERROR]
    assert await store.read_events() == events  # everything fits one page
    for index, event in enumerate(events):
        assert await store.read_events(after=event.event_id) == events[index + 1 :]
    assert await read_all_events(store, page=2) == events
    assert await read_all_events(store, page=1) == events


async def test_read_events_filters_by_tenant_scan_and_status(store: Store) -> None:
    acme1, other, acme2 = new_scan(tenant="acme"), new_scan(tenant="other"), new_scan(tenant="acme")
    await store.create_many(scans=[acme1, other, acme2])
    claimed = {scan.scan_id: scan for scan in await store.claim(worker_id="w1", limit=3, lease_s=LONG_LEASE_S)}
    await store.finish(finishes=[Finish(lease=lease_of(claimed[acme1.scan_id]), outcome=Outcome.COMPLETE, result={})])
    events = await settled_events(store, count=7)
    ends = frozenset({R, ScanStatus.COMPLETE})

    by_tenant = await read_all_events(store, tenant="acme")
    by_scan = await read_all_events(store, scan_id=acme1.scan_id)
    by_status = await read_all_events(store, statuses=ends)
    together = await read_all_events(store, tenant="acme", statuses=frozenset({ScanStatus.COMPLETE}))

    assert by_tenant == [event for event in events if event.tenant == "acme"]
    assert len(by_tenant) == 5
    assert by_scan == [event for event in events if event.scan_id == acme1.scan_id]
    assert [event.status for event in by_scan] == [A, R, ScanStatus.COMPLETE]
    assert by_status == [event for event in events if event.status in ends]
    assert len(by_status) == 4
    assert [event.scan_id for event in together] == [acme1.scan_id]
    assert await read_all_events(store, tenant="acme", page=1) == by_tenant  # a filtered read continues too
    assert await store.read_events(tenant="nobody") == []
    assert await store.read_events(tenant="other", statuses=frozenset({ScanStatus.COMPLETE})) == []


@pytest.mark.slow_on_mongo
async def test_read_events_returns_at_most_a_page(store: Store) -> None:
    """``limit`` is capped at ``MAX_PAGE_SIZE`` (a page may be shorter: reading goes on after its last event)."""
    count = MAX_PAGE_SIZE + 1
    await store.create_many(scans=[new_scan() for _ in range(count)])

    events = await settled_events(store, count=count)
    first = await store.read_events(limit=MAX_PAGE_SIZE * 2)
    small = await store.read_events(limit=3)

    assert len(events) == count
    assert len({event.event_id for event in events}) == count
    assert 0 < len(first) <= MAX_PAGE_SIZE
    assert first == events[: len(first)]
    assert 0 < len(small) <= 3
    assert small == events[: len(small)]


async def test_events_head_is_a_position_after_every_settled_event(store: Store) -> None:
    empty_head = await store.events_head()
    assert await store.read_events(after=empty_head) == []
    await store.create_many(scans=[new_scan(), new_scan()])
    before = await settled_events(store, count=2)

    head = await store.events_head()

    assert await store.read_events(after=head) == []
    later = (await store.create(scan=new_scan())).scan
    (event,) = await settled_events(store, count=1, after=head)
    assert event.scan_id == later.scan_id
    assert await read_all_events(store, after=empty_head) == [*before, event]


@pytest.mark.parametrize("after", ["not-an-event", "12abc", "1; drop table scan_events", "\x00"])
async def test_an_after_the_store_cannot_have_made_is_a_validation_error(store: Store, after: str) -> None:
    await store.create(scan=new_scan())
    await settled_events(store, count=1)

    with pytest.raises(ValidationError):
        await store.read_events(after=after)


# -- waiting ----------------------------------------------------------------------------------------


async def test_wait_for_events_wakes_soon_after_a_create_elsewhere(store: Store, open_another: StoreFactory) -> None:
    producer = await open_another()
    await settle_event_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_events(timeout_s=LONG_WAIT_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await producer.create(scan=new_scan())

    await asyncio.wait_for(waiting, DEADLINE_S)


async def test_wait_for_events_wakes_on_a_transition_that_makes_no_work(
    store: Store, open_another: StoreFactory
) -> None:
    """A claim makes no new work (``wait_for_work`` may sleep through it) but it is an event."""
    worker = await open_another()
    await store.create(scan=new_scan())
    await settle_event_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_events(timeout_s=LONG_WAIT_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await claim_one(worker)

    await asyncio.wait_for(waiting, DEADLINE_S)


async def test_wait_for_events_wakes_on_the_stores_own_write(store: Store) -> None:
    await settle_event_wake_up(store)
    waiting = asyncio.create_task(store.wait_for_events(timeout_s=LONG_WAIT_S))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await store.create(scan=new_scan())

    await asyncio.wait_for(waiting, DEADLINE_S)


async def test_wait_for_events_returns_at_its_timeout_when_nothing_happens(store: Store) -> None:
    await settle_event_wake_up(store)
    started = time.monotonic()

    await store.wait_for_events(timeout_s=0.3)

    assert 0.25 <= time.monotonic() - started < DEADLINE_S


# -- pruning ----------------------------------------------------------------------------------------


async def test_prune_events_needs_the_retention_role(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(3)])
    events = await settled_events(store, count=3)
    await dispatch_all(store, count=3)
    cutoff = datetime.now(UTC) + FAR_FUTURE

    nobody = await store.prune_events(before=cutoff, owner=PRUNER)
    assert await store.lead(role=RETENTION_ROLE, owner="pruner-2", term_s=ROLE_TERM_S)
    another = await store.prune_events(before=cutoff, owner=PRUNER)

    assert (nobody, another) == (0, 0)
    assert await read_all_events(store) == events
    await store.resign(role=RETENTION_ROLE, owner="pruner-2")
    await lead_retention(store)
    assert await store.prune_events(before=cutoff, owner=PRUNER) == 3
    assert await store.read_events() == []


async def test_prune_events_deletes_the_oldest_events_before_the_cutoff(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(3)])
    early = await settled_events(store, count=3)
    await asyncio.sleep(BETWEEN_BATCHES_S)
    await store.create_many(scans=[new_scan() for _ in range(2)])
    events = await settled_events(store, count=5)
    late = events[3:]
    assert max(e.at for e in early) < min(e.at for e in late), "the store's clock did not move between the batches"
    cutoff = max(e.at for e in early) + (min(e.at for e in late) - max(e.at for e in early)) / 2
    await dispatch_all(store, count=5)
    await lead_retention(store)

    assert await store.prune_events(before=cutoff, owner=PRUNER, limit=2) == 2
    assert await read_all_events(store) == events[2:]
    assert await store.prune_events(before=cutoff, owner=PRUNER) == 1
    assert await store.prune_events(before=cutoff, owner=PRUNER) == 0

    assert await read_all_events(store) == late
    # Reading after a pruned event goes on from the next kept one.
    assert await read_all_events(store, after=early[0].event_id) == late
    assert await read_all_events(store, after=early[-1].event_id) == late


async def test_prune_events_never_deletes_an_event_the_dispatcher_has_not_passed(store: Store) -> None:
    """Before any dispatch the cursor is before the oldest event: nothing may go, however old."""
    await store.create_many(scans=[new_scan() for _ in range(4)])
    events = await settled_events(store, count=4)
    await lead_retention(store)
    cutoff = datetime.now(UTC) + FAR_FUTURE

    assert await store.prune_events(before=cutoff, owner=PRUNER) == 0
    assert await store.lead(role=WEBHOOK_ROLE, owner=DISPATCHER, term_s=ROLE_TERM_S)
    assert await store.dispatch_events(owner=DISPATCHER, limit=2) == 2
    assert await store.prune_events(before=cutoff, owner=PRUNER) == 2
    assert await read_all_events(store) == events[2:]
    assert await dispatch_all(store, count=2) == 2
    assert await store.prune_events(before=cutoff, owner=PRUNER) == 2
    assert await store.read_events() == []


async def test_prune_events_keeps_every_delivery_which_still_lists_and_retries(store: Store) -> None:
    """Deliveries carry their event's fields: they outlive it, ended or not (``prune_deliveries`` is their own)."""
    endpoint = new_endpoint(tenant="acme", event_types=frozenset({EventType.ACCEPTED}))
    await store.create_endpoint(endpoint=endpoint)
    await store.create_many(scans=[new_scan(tenant="acme") for _ in range(3)])
    old = await settled_events(store, count=3)
    await asyncio.sleep(BETWEEN_BATCHES_S)
    await store.create(scan=new_scan(tenant="acme"))
    events = await settled_events(store, count=4)
    assert old[-1].at < events[-1].at
    cutoff = old[-1].at + (events[-1].at - old[-1].at) / 2
    await dispatch_all(store, count=4)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=4)}
    delivered, failed, pending, kept = (jobs[event.event_id] for event in events)
    results = [
        result_of(delivered, DeliveryOutcome.DELIVERED, status_code=204),
        result_of(failed, DeliveryOutcome.FAILED, status_code=410, error="gone"),
        result_of(pending, DeliveryOutcome.RETRY, status_code=503, retry_at=datetime.now(UTC) + timedelta(hours=1)),
        result_of(kept, DeliveryOutcome.DELIVERED, status_code=200),
    ]
    assert await store.record_deliveries(results=results) == [True] * 4
    before = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    await lead_retention(store)

    assert await store.prune_events(before=cutoff, owner=PRUNER) == 3
    assert await store.prune_events(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER) == 1

    assert await read_all_events(store) == []
    left = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert left == before
    assert [(d.event, d.status) for d in left] == [
        (events[3], DeliveryStatus.DELIVERED),
        (events[2], DeliveryStatus.PENDING),
        (events[1], DeliveryStatus.FAILED),
        (events[0], DeliveryStatus.DELIVERED),
    ]
    assert [
        d.event for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id, status=DeliveryStatus.FAILED)
    ] == [events[1]]
    retried = await store.retry_delivery(endpoint_id=endpoint.endpoint_id, event_id=events[1].event_id)
    assert (retried.event, retried.status, retried.attempts, retried.last_error) == (
        events[1],
        DeliveryStatus.PENDING,
        1,
        "gone",
    )
    (job,) = await claim_deliveries_until(store, worker_id="w2", count=1)
    assert job.delivery.event == events[1]
    assert await store.record_deliveries(results=[result_of(job, DeliveryOutcome.DELIVERED, status_code=200)]) == [True]
