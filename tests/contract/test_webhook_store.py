"""Webhooks in the store (rule 11): endpoints, dispatching events to deliveries, claiming and recording them.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import DeliveryNotFound, EndpointNotFound, ValidationError
from scanq.models import (
    DeliveryJob,
    DeliveryOutcome,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    Finish,
    Outcome,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE, WEBHOOK_ROLE
from tests.contract.events import (
    DISPATCHER,
    ROLE_TERM_S,
    claim_deliveries_until,
    deliveries_by_event,
    dispatch_all,
    new_endpoint,
    new_secret,
    result_of,
    settled_events,
    truncate_ms,
)
from tests.contract.finished import BETWEEN_BATCHES_S
from tests.contract.helpers import (
    LEASE_S,
    LONG_LEASE_S,
    RACE_CLAIMERS,
    RACE_DEADLINE_S,
    SAME_INSTANT,
    StoreFactory,
    assert_near,
    assert_same_instant,
    claim_one,
    lease_of,
    new_scan,
    now_ms,
)

EVERY_TYPE = frozenset(EventType)
ACCEPTED_ONLY = frozenset({EventType.ACCEPTED})


def ids(endpoints: list[WebhookEndpoint]) -> list[str]:
    return [endpoint.endpoint_id for endpoint in endpoints]


async def make_events(store: Store, *, count: int, tenant: str = "acme") -> list[ScanEvent]:
    """``count`` Accepted events of ``tenant`` (one new scan each), as settled, after those already there."""
    already = len(await settled_events(store, count=0))
    await store.create_many(scans=[new_scan(tenant=tenant) for _ in range(count)])
    return (await settled_events(store, count=already + count))[already:]


async def pending_deliveries(store: Store, *, count: int) -> tuple[WebhookEndpoint, list[ScanEvent]]:
    """An endpoint of ``acme`` owed ``count`` deliveries (Accepted events, dispatched)."""
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    events = await make_events(store, count=count)
    await dispatch_all(store, count=count)
    return endpoint, events


def job_events(jobs: list[DeliveryJob]) -> list[str]:
    return [job.delivery.event.event_id for job in jobs]


# -- endpoints --------------------------------------------------------------------------------------


async def test_a_created_endpoint_reads_back_with_every_field(store: Store) -> None:
    full = new_endpoint(description="ticketing", event_types=frozenset({EventType.STARTED, EventType.FAILED}))
    bare = new_endpoint(tenant="other", event_types=frozenset())

    await store.create_endpoint(endpoint=full)
    await store.create_endpoint(endpoint=bare)
    found = await store.get_endpoint(endpoint_id=full.endpoint_id, tenant="acme")

    assert found == full
    assert isinstance(found.event_types, frozenset)
    assert all(isinstance(kind, EventType) for kind in found.event_types)
    assert await store.get_endpoint(endpoint_id=bare.endpoint_id) == bare


async def test_an_endpoint_id_is_unique(store: Store) -> None:
    endpoint = new_endpoint()
    await store.create_endpoint(endpoint=endpoint)

    with pytest.raises(ValidationError):
        await store.create_endpoint(endpoint=new_endpoint(endpoint_id=endpoint.endpoint_id, tenant="other"))

    assert await store.list_endpoints() == [endpoint]


async def test_another_tenants_endpoint_is_answered_as_unknown(store: Store) -> None:
    endpoint = new_endpoint(tenant="acme")
    await store.create_endpoint(endpoint=endpoint)
    eid = endpoint.endpoint_id

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_endpoint(endpoint_id=eid, tenant="other"),
        lambda: store.get_endpoint(endpoint_id="ep_missing"),
        lambda: store.delete_endpoint(endpoint_id=eid, tenant="other"),
        lambda: store.rotate_endpoint_secret(
            endpoint_id=eid, secret=new_secret(), previous_until=now_ms(), tenant="other"
        ),
        lambda: store.list_deliveries(endpoint_id=eid, tenant="other"),
        lambda: store.retry_delivery(endpoint_id=eid, event_id="1", tenant="other"),
    ]
    for call in calls:
        with pytest.raises(EndpointNotFound) as caught:
            await call()
        assert caught.value.endpoint_id in (eid, "ep_missing")

    assert await store.get_endpoint(endpoint_id=eid) == endpoint  # untouched
    assert await store.get_endpoint(endpoint_id=eid, tenant="acme") == endpoint


async def test_endpoints_are_listed_oldest_first_then_by_id_per_tenant(store: Store) -> None:
    early = now_ms() - timedelta(hours=2)
    late = early + timedelta(hours=1)
    endpoints = [
        new_endpoint(endpoint_id="ep_c", created_at=early, updated_at=early),
        new_endpoint(endpoint_id="ep_b", created_at=late, updated_at=late),
        new_endpoint(endpoint_id="ep_a", created_at=late, updated_at=late),
        new_endpoint(endpoint_id="ep_d", tenant="other", created_at=late, updated_at=late),
    ]
    for endpoint in endpoints:
        await store.create_endpoint(endpoint=endpoint)

    assert ids(await store.list_endpoints(tenant="acme")) == ["ep_c", "ep_a", "ep_b"]
    assert ids(await store.list_endpoints()) == ["ep_c", "ep_a", "ep_b", "ep_d"]
    assert await store.list_endpoints(tenant="other") == [endpoints[3]]
    assert await store.list_endpoints(tenant="nobody") == []


async def test_a_deleted_endpoint_is_gone(store: Store) -> None:
    endpoint, kept = new_endpoint(), new_endpoint()
    await store.create_endpoint(endpoint=endpoint)
    await store.create_endpoint(endpoint=kept)

    await store.delete_endpoint(endpoint_id=endpoint.endpoint_id, tenant="acme")

    with pytest.raises(EndpointNotFound):
        await store.get_endpoint(endpoint_id=endpoint.endpoint_id)
    with pytest.raises(EndpointNotFound):
        await store.delete_endpoint(endpoint_id=endpoint.endpoint_id)
    assert await store.list_endpoints() == [kept]


async def test_rotating_the_secret_keeps_the_old_one_as_previous_until_a_time(store: Store) -> None:
    """The store sets ``updated_at`` to its now; every other field but the secrets stays."""
    endpoint = new_endpoint()
    await store.create_endpoint(endpoint=endpoint)
    second, third = new_secret(), new_secret()
    until = now_ms() + timedelta(hours=24)

    rotated = await store.rotate_endpoint_secret(
        endpoint_id=endpoint.endpoint_id, secret=second, previous_until=until, tenant="acme"
    )

    assert (rotated.secret, rotated.previous_secret) == (second, endpoint.secret)
    assert_same_instant(rotated.previous_secret_until, until)
    assert_near(rotated.updated_at, datetime.now(UTC))
    unchanged = dataclasses.replace(
        rotated,
        secret=endpoint.secret,
        previous_secret=None,
        previous_secret_until=None,
        updated_at=endpoint.updated_at,
    )
    assert unchanged == endpoint
    assert await store.get_endpoint(endpoint_id=endpoint.endpoint_id) == rotated

    again = await store.rotate_endpoint_secret(endpoint_id=endpoint.endpoint_id, secret=third, previous_until=until)

    assert (again.secret, again.previous_secret) == (third, second)
    assert await store.get_endpoint(endpoint_id=endpoint.endpoint_id) == again


# -- dispatch ---------------------------------------------------------------------------------------


async def test_dispatch_needs_the_webhook_role(store: Store) -> None:
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    await make_events(store, count=2)

    nobody = await store.dispatch_events(owner=DISPATCHER)
    assert await store.lead(role=WEBHOOK_ROLE, owner="dispatcher-2", term_s=ROLE_TERM_S)
    another = await store.dispatch_events(owner=DISPATCHER)

    assert (nobody, another) == (0, 0)
    assert await store.list_deliveries(endpoint_id=endpoint.endpoint_id) == []
    assert await store.dispatch_events(owner="dispatcher-2") == 2
    assert len(await store.list_deliveries(endpoint_id=endpoint.endpoint_id)) == 2


async def test_dispatch_fans_each_event_out_to_the_subscribed_endpoints_of_its_tenant(store: Store) -> None:
    ends = new_endpoint(tenant="acme")  # the default types: completed, failed, cancelled
    everything = new_endpoint(tenant="acme", event_types=EVERY_TYPE)
    starts = new_endpoint(tenant="acme", event_types=frozenset({EventType.STARTED}))
    other = new_endpoint(tenant="other", event_types=EVERY_TYPE)
    for endpoint in (ends, everything, starts, other):
        await store.create_endpoint(endpoint=endpoint)
    acme = (await store.create(scan=new_scan(tenant="acme"))).scan
    await store.create(scan=new_scan(tenant="third"))  # nobody's: no delivery
    running = await claim_one(store)
    assert running.scan_id == acme.scan_id
    done = Finish(lease=lease_of(running), outcome=Outcome.COMPLETE, result={"findings": []})
    assert await store.finish(finishes=[done]) == [True]
    await store.create(scan=new_scan(tenant="other"))
    events = await settled_events(store, count=5)
    acme_events = [e for e in events if e.tenant == "acme"]
    (other_event,) = [e for e in events if e.tenant == "other"]

    passed = await dispatch_all(store, count=5)

    assert passed == 5
    by_endpoint = {
        e.endpoint_id: await store.list_deliveries(endpoint_id=e.endpoint_id) for e in (ends, everything, starts, other)
    }
    assert [d.event for d in by_endpoint[ends.endpoint_id]] == [acme_events[2]]
    assert [d.event for d in by_endpoint[everything.endpoint_id]] == acme_events[::-1]  # newest event first
    assert [d.event for d in by_endpoint[starts.endpoint_id]] == [acme_events[1]]
    assert [d.event for d in by_endpoint[other.endpoint_id]] == [other_event]
    assert acme_events[2].type is EventType.COMPLETED and acme_events[2].status is ScanStatus.COMPLETE
    for delivery in (d for ds in by_endpoint.values() for d in ds):
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
        assert (delivery.last_attempt_at, delivery.last_status_code, delivery.last_error, delivery.delivered_at) == (
            None,
            None,
            None,
            None,
        )
        assert_near(delivery.created_at, datetime.now(UTC))
        assert_same_instant(delivery.next_attempt_at, delivery.created_at)


async def test_an_endpoint_gets_no_event_from_before_it_existed(store: Store) -> None:
    created = (await store.create(scan=new_scan(tenant="acme"))).scan
    (before,) = await settled_events(store, count=1)
    late = truncate_ms(before.at) + timedelta(milliseconds=1)
    endpoint = new_endpoint(event_types=EVERY_TYPE, created_at=late, updated_at=late)
    await store.create_endpoint(endpoint=endpoint)
    await asyncio.sleep(BETWEEN_BATCHES_S)
    running = await claim_one(store)
    assert running.scan_id == created.scan_id
    events = await settled_events(store, count=2)
    assert events[1].at >= endpoint.created_at

    await dispatch_all(store, count=2)

    assert [d.event for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id)] == [events[1]]


async def test_dispatch_passes_events_once_and_moves_its_cursor(store: Store, open_another: StoreFactory) -> None:
    """The cursor is stored: a dispatcher in another process that takes the role over goes on after it."""
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    events = await make_events(store, count=5)
    assert await store.lead(role=WEBHOOK_ROLE, owner=DISPATCHER, term_s=ROLE_TERM_S)

    assert await store.dispatch_events(owner=DISPATCHER, limit=2) == 2
    assert [d.event for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id)] == events[1::-1]
    assert await store.dispatch_events(owner=DISPATCHER, limit=2) == 2
    assert await store.dispatch_events(owner=DISPATCHER, limit=2) == 1
    assert await store.dispatch_events(owner=DISPATCHER) == 0
    first = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert [d.event for d in first] == events[::-1]

    await store.resign(role=WEBHOOK_ROLE, owner=DISPATCHER)
    successor = await open_another()
    assert await successor.dispatch_events(owner="dispatcher-2") == 0  # not its role yet
    assert await dispatch_all(successor, count=0, owner="dispatcher-2") == 0
    assert await store.list_deliveries(endpoint_id=endpoint.endpoint_id) == first
    (later,) = await make_events(store, count=1)
    assert await dispatch_all(successor, count=1, owner="dispatcher-2") == 1
    assert [d.event for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id)] == [later, *events[::-1]]


async def test_events_passed_while_no_endpoint_listened_are_never_delivered(store: Store) -> None:
    """The cursor moves without endpoints too: an endpoint added later (even dated earlier) gets new events only."""
    await make_events(store, count=2)
    assert await dispatch_all(store, count=2) == 2
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    (fresh,) = await make_events(store, count=1)

    assert await dispatch_all(store, count=1) == 1

    assert [d.event for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id)] == [fresh]


# -- claim ------------------------------------------------------------------------------------------


async def test_a_claim_leases_due_deliveries_with_their_endpoint_and_its_secrets(store: Store) -> None:
    endpoint, events = await pending_deliveries(store, count=2)
    until = now_ms() + timedelta(hours=1)
    rotated = await store.rotate_endpoint_secret(
        endpoint_id=endpoint.endpoint_id, secret=new_secret(), previous_until=until
    )
    stored = await deliveries_by_event(store, endpoint.endpoint_id)

    jobs = await store.claim_deliveries(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    assert sorted(job_events(jobs)) == sorted(e.event_id for e in events)
    for job in jobs:
        assert job.worker_id == "w1"
        assert job.endpoint == rotated
        assert job.endpoint.previous_secret == endpoint.secret
        assert job.delivery == stored[job.delivery.event.event_id]
    assert await store.claim_deliveries(worker_id="w2", limit=10, lease_s=LONG_LEASE_S) == []


async def test_a_claim_takes_the_earliest_due_first(store: Store) -> None:
    _, events = await pending_deliveries(store, count=3)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=3)}
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    order = [events[2], events[0], events[1]]
    for event in order:  # each due at its record's now (a past retry_at counts from now), one after another
        job = jobs[event.event_id]
        assert await store.record_deliveries(results=[result_of(job, DeliveryOutcome.RETRY, retry_at=long_ago)]) == [
            True
        ]
        await asyncio.sleep(BETWEEN_BATCHES_S)

    claimed = [await claim_deliveries_until(store, worker_id="w2", count=1) for _ in order]

    assert [job_events(one)[0] for one in claimed] == [e.event_id for e in order]


@pytest.mark.slow_on_mongo
async def test_concurrent_claimers_never_get_the_same_delivery(store: Store, open_another: StoreFactory) -> None:
    count = 60
    _, events = await pending_deliveries(store, count=count)
    claimers = [await open_another() for _ in range(RACE_CLAIMERS)]
    got: list[list[str]] = [[] for _ in claimers]

    async def claim(index: int, claimer: Store) -> None:
        while sum(map(len, got)) < count:
            jobs = await claimer.claim_deliveries(worker_id=f"w{index}", limit=3, lease_s=LONG_LEASE_S)
            got[index].extend(job_events(jobs))
            await asyncio.sleep(0 if jobs else 0.01)

    async with asyncio.timeout(RACE_DEADLINE_S):
        await asyncio.gather(*(claim(index, claimer) for index, claimer in enumerate(claimers)))

    every = [event_id for part in got for event_id in part]
    assert sorted(every) == sorted(e.event_id for e in events)  # each once, none lost
    assert await store.claim_deliveries(worker_id="late", limit=count, lease_s=LONG_LEASE_S) == []


async def test_an_expired_delivery_lease_is_claimable_again_and_fences_off_its_first_worker(store: Store) -> None:
    await pending_deliveries(store, count=1)
    (first,) = await store.claim_deliveries(worker_id="w1", limit=1, lease_s=LEASE_S)

    (second,) = await claim_deliveries_until(store, worker_id="w2", count=1)

    assert second.delivery.event == first.delivery.event
    assert second.delivery.attempts == 0  # a claim is not an attempt; a report is
    assert await store.record_deliveries(results=[result_of(first, DeliveryOutcome.DELIVERED, status_code=200)]) == [
        False
    ]
    assert await store.record_deliveries(results=[result_of(second, DeliveryOutcome.DELIVERED, status_code=200)]) == [
        True
    ]


# -- record -----------------------------------------------------------------------------------------


async def test_record_is_fenced_by_the_worker_holding_the_lease(store: Store) -> None:
    endpoint, _ = await pending_deliveries(store, count=1)
    (job,) = await store.claim_deliveries(worker_id="w1", limit=1, lease_s=LONG_LEASE_S)
    stranger = dataclasses.replace(job, worker_id="w2")
    unknown = DeliveryResult(
        endpoint_id="ep_missing", event_id=job.delivery.event.event_id, worker_id="w1", outcome=DeliveryOutcome.FAILED
    )

    answers = await store.record_deliveries(
        results=[
            result_of(stranger, DeliveryOutcome.FAILED, status_code=500),
            unknown,
            result_of(job, DeliveryOutcome.DELIVERED, status_code=200),
        ]
    )
    again = await store.record_deliveries(results=[result_of(job, DeliveryOutcome.FAILED, status_code=500)])

    assert (answers, again) == ([False, False, True], [False])
    (delivery,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 200)


async def test_of_several_results_for_one_delivery_in_one_call_the_first_of_its_worker_wins(store: Store) -> None:
    """As if applied one after another: the first result clears the lease, so a repeat of it is refused."""
    endpoint, events = await pending_deliveries(store, count=2)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=2)}
    first, second = (jobs[event.event_id] for event in events)
    stranger = dataclasses.replace(second, worker_id="w2")

    answers = await store.record_deliveries(
        results=[
            result_of(stranger, DeliveryOutcome.DELIVERED, status_code=200),  # never held the lease
            result_of(first, DeliveryOutcome.FAILED, status_code=410, error="gone"),
            result_of(second, DeliveryOutcome.RETRY, status_code=503, retry_at=now_ms() + timedelta(hours=1)),
            result_of(first, DeliveryOutcome.DELIVERED, status_code=200),  # a repeat: the lease is gone
            result_of(second, DeliveryOutcome.FAILED, status_code=500),
        ]
    )

    assert answers == [False, True, True, False, False]
    stored = await deliveries_by_event(store, endpoint.endpoint_id)
    failed, waiting = (stored[event.event_id] for event in events)
    assert (failed.status, failed.attempts, failed.last_status_code, failed.last_error) == (
        DeliveryStatus.FAILED,
        1,
        410,
        "gone",
    )
    assert (waiting.status, waiting.attempts, waiting.last_status_code) == (DeliveryStatus.PENDING, 1, 503)


async def test_each_outcome_records_its_attempt(store: Store) -> None:
    endpoint, events = await pending_deliveries(store, count=3)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=3)}
    ok, later, dead = (jobs[e.event_id] for e in events)
    retry_at = now_ms() + timedelta(hours=1)

    answers = await store.record_deliveries(
        results=[
            result_of(ok, DeliveryOutcome.DELIVERED, status_code=204),
            result_of(later, DeliveryOutcome.RETRY, status_code=503, error="HTTP 503", retry_at=retry_at),
            result_of(dead, DeliveryOutcome.FAILED, status_code=None, error="connection refused"),
        ]
    )

    assert answers == [True, True, True]
    now = datetime.now(UTC)
    stored = await deliveries_by_event(store, endpoint.endpoint_id)
    delivered, pending, failed = (stored[e.event_id] for e in events)
    for delivery in (delivered, pending, failed):
        assert delivery.attempts == 1
        assert_near(delivery.last_attempt_at, now)
    assert (delivered.status, delivered.last_status_code, delivered.last_error) == (DeliveryStatus.DELIVERED, 204, None)
    assert_same_instant(delivered.delivered_at, delivered.last_attempt_at)
    assert (pending.status, pending.last_status_code, pending.last_error) == (DeliveryStatus.PENDING, 503, "HTTP 503")
    assert_same_instant(pending.next_attempt_at, retry_at)
    assert pending.delivered_at is None
    assert (failed.status, failed.last_status_code, failed.last_error) == (
        DeliveryStatus.FAILED,
        None,
        "connection refused",
    )
    assert failed.delivered_at is None
    # Nothing is due: one ended, one failed, one waits an hour.
    assert await store.claim_deliveries(worker_id="w2", limit=10, lease_s=LONG_LEASE_S) == []


async def test_a_retry_due_in_the_past_is_due_now_and_attempts_add_up(store: Store) -> None:
    """A worker's clock may lag the store's: a ``retry_at`` before the record's now counts from now."""
    endpoint, _ = await pending_deliveries(store, count=1)
    (job,) = await store.claim_deliveries(worker_id="w1", limit=1, lease_s=LONG_LEASE_S)
    past = result_of(job, DeliveryOutcome.RETRY, status_code=500, retry_at=now_ms() - timedelta(hours=1))
    assert await store.record_deliveries(results=[past]) == [True]

    (delivery,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)

    assert delivery.last_attempt_at is not None
    assert delivery.next_attempt_at >= delivery.last_attempt_at - SAME_INSTANT
    assert_near(delivery.next_attempt_at, datetime.now(UTC))
    (again,) = await claim_deliveries_until(store, worker_id="w2", count=1)
    assert again.delivery.attempts == 1
    assert await store.record_deliveries(results=[result_of(again, DeliveryOutcome.DELIVERED, status_code=200)]) == [
        True
    ]
    (done,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert (done.status, done.attempts) == (DeliveryStatus.DELIVERED, 2)


# -- list, retry, delete ----------------------------------------------------------------------------


async def test_deliveries_are_listed_newest_event_first_filtered_by_status(store: Store) -> None:
    endpoint, events = await pending_deliveries(store, count=4)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=4)}
    outcomes = [DeliveryOutcome.DELIVERED, DeliveryOutcome.FAILED, DeliveryOutcome.DELIVERED]
    results = [result_of(jobs[e.event_id], o, status_code=200) for e, o in zip(events, outcomes, strict=False)]
    assert await store.record_deliveries(results=results) == [True] * 3
    eid = endpoint.endpoint_id

    every = await store.list_deliveries(endpoint_id=eid, tenant="acme")

    assert [d.event for d in every] == events[::-1]
    assert [d.event for d in await store.list_deliveries(endpoint_id=eid, limit=2)] == events[:1:-1]
    assert [d.event for d in await store.list_deliveries(endpoint_id=eid, status=DeliveryStatus.DELIVERED)] == [
        events[2],
        events[0],
    ]
    assert [d.event for d in await store.list_deliveries(endpoint_id=eid, status=DeliveryStatus.FAILED)] == [events[1]]
    assert [d.event for d in await store.list_deliveries(endpoint_id=eid, status=DeliveryStatus.PENDING)] == [events[3]]
    with pytest.raises(EndpointNotFound):
        await store.list_deliveries(endpoint_id="ep_missing")


@pytest.mark.slow_on_mongo
async def test_list_deliveries_returns_at_most_a_page(store: Store) -> None:
    count = MAX_PAGE_SIZE + 1
    endpoint, events = await pending_deliveries(store, count=count)

    listed = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=count * 2)

    assert len(listed) == MAX_PAGE_SIZE
    assert [d.event for d in listed] == events[: -MAX_PAGE_SIZE - 1 : -1]


async def test_retry_delivery_makes_any_delivery_pending_and_due_now(store: Store) -> None:
    endpoint, events = await pending_deliveries(store, count=4)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=4)}
    failed_job, delivered_job, waiting_job, leased_job = (jobs[e.event_id] for e in events)
    results = [
        result_of(failed_job, DeliveryOutcome.FAILED, status_code=500, error="HTTP 500"),
        result_of(delivered_job, DeliveryOutcome.DELIVERED, status_code=200),
        result_of(waiting_job, DeliveryOutcome.RETRY, status_code=429, retry_at=now_ms() + timedelta(hours=1)),
    ]
    assert await store.record_deliveries(results=results) == [True, True, True]
    eid = endpoint.endpoint_id

    retried = [await store.retry_delivery(endpoint_id=eid, event_id=e.event_id, tenant="acme") for e in events]

    now = datetime.now(UTC)
    stored = await deliveries_by_event(store, eid)
    for delivery, attempts in zip(retried, [1, 1, 1, 0], strict=True):
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, attempts)
        assert_near(delivery.next_attempt_at, now)
        assert delivery == stored[delivery.event.event_id]
    assert retried[0].last_error == "HTTP 500"  # the last attempt's report stays until the next one
    # All four are due again (the one waiting an hour too), the one w1 still held included: its lease is gone.
    again = await claim_deliveries_until(store, worker_id="w2", count=4)
    assert sorted(job_events(again)) == sorted(e.event_id for e in events)
    assert await store.record_deliveries(results=[result_of(leased_job, DeliveryOutcome.DELIVERED)]) == [False]


async def test_retry_delivery_of_an_unknown_delivery_or_endpoint(store: Store) -> None:
    endpoint, events = await pending_deliveries(store, count=1)
    other = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=other)  # created after the dispatch: owed nothing

    with pytest.raises(DeliveryNotFound) as caught:
        await store.retry_delivery(endpoint_id=other.endpoint_id, event_id=events[0].event_id)
    with pytest.raises(EndpointNotFound):
        await store.retry_delivery(endpoint_id="ep_missing", event_id=events[0].event_id)

    assert (caught.value.endpoint_id, caught.value.event_id) == (other.endpoint_id, events[0].event_id)
    assert await store.list_deliveries(endpoint_id=other.endpoint_id) == []
    (delivery,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert delivery.status is DeliveryStatus.PENDING


async def test_deleting_an_endpoint_deletes_its_deliveries(store: Store) -> None:
    doomed = new_endpoint(event_types=ACCEPTED_ONLY)
    kept = new_endpoint(event_types=ACCEPTED_ONLY)
    for endpoint in (doomed, kept):
        await store.create_endpoint(endpoint=endpoint)
    (first,) = await make_events(store, count=1)
    await dispatch_all(store, count=1)
    held = {job.delivery.endpoint_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=2)}
    (second,) = await make_events(store, count=1)
    await dispatch_all(store, count=1)  # owed to both, not yet claimed

    await store.delete_endpoint(endpoint_id=doomed.endpoint_id, tenant="acme")

    gone = result_of(held[doomed.endpoint_id], DeliveryOutcome.DELIVERED, status_code=200)
    assert await store.record_deliveries(results=[gone]) == [False]
    claimable = await store.claim_deliveries(worker_id="w2", limit=10, lease_s=LONG_LEASE_S)
    assert [(job.delivery.endpoint_id, job.delivery.event) for job in claimable] == [(kept.endpoint_id, second)]
    assert [d.event for d in await store.list_deliveries(endpoint_id=kept.endpoint_id)] == [second, first]
    await store.create_endpoint(endpoint=doomed)  # the same id again: a new endpoint, owed nothing
    assert await store.list_deliveries(endpoint_id=doomed.endpoint_id) == []
    for event in (first, second):
        with pytest.raises(DeliveryNotFound):
            await store.retry_delivery(endpoint_id=doomed.endpoint_id, event_id=event.event_id)
