"""One-off callbacks (rule 11): a scan's ``callback_url``, the tenant's callback endpoint, and delivery retention.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from scanq.models import (
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    EventType,
    Finish,
    Outcome,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store import Store
from scanq.store.base import RETENTION_ROLE, callback_endpoint_id
from tests.contract.events import (
    FAR_FUTURE,
    PRUNER,
    ROLE_TERM_S,
    claim_deliveries_until,
    deliveries_by_event,
    dispatch_all,
    lead_retention,
    new_endpoint,
    result_of,
    settled_events,
    truncate_ms,
)
from tests.contract.finished import BETWEEN_BATCHES_S
from tests.contract.helpers import LONG_LEASE_S, claim_one, lease_of, new_scan

HOOK = "https://hooks.example.com/scan/1"
OTHER_HOOK = "https://hooks.example.net/cb?scan=2"
EVERY_TYPE = frozenset(EventType)
ACCEPTED_ONLY = frozenset({EventType.ACCEPTED})


def callback_endpoint(tenant: str = "acme", **fields: Any) -> WebhookEndpoint:
    """The callback endpoint of ``tenant``: its store id, no url of its own."""
    return new_endpoint(endpoint_id=callback_endpoint_id(tenant), tenant=tenant, url=None, **fields)


# -- callback_url on the scan -----------------------------------------------------------------------


def test_the_callback_endpoint_id_is_named_after_its_tenant() -> None:
    assert callback_endpoint_id("acme") == "callbacks.acme"
    assert callback_endpoint_id("acme") != callback_endpoint_id("other")


async def test_a_callback_url_is_stored_and_read_back(store: Store) -> None:
    single = (await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))).scan
    batch = await store.create_many(scans=[new_scan(tenant="acme", callback_url=OTHER_HOOK), new_scan(tenant="acme")])
    together = await asyncio.gather(
        *(store.create(scan=new_scan(tenant="acme", callback_url=f"{HOOK}?n={n}")) for n in range(5))
    )

    assert single.callback_url == HOOK
    assert [created.scan.callback_url for created in batch] == [OTHER_HOOK, None]
    assert [created.scan.callback_url for created in together] == [f"{HOOK}?n={n}" for n in range(5)]
    for created in [single, *(c.scan for c in batch), *(c.scan for c in together)]:
        assert await store.get(scan_id=created.scan_id) == created
    listed = {scan.scan_id: scan.callback_url for scan in (await store.list_scans(limit=50)).scans}
    assert listed[single.scan_id] == HOOK
    assert listed[batch[0].scan.scan_id] == OTHER_HOOK
    assert listed[batch[1].scan.scan_id] is None


async def test_a_callback_url_stays_through_the_scans_life_and_its_export(store: Store) -> None:
    created = (await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))).scan
    running = await claim_one(store)
    assert (running.scan_id, running.callback_url) == (created.scan_id, HOOK)
    done = Finish(lease=lease_of(running), outcome=Outcome.COMPLETE, result={"findings": []})
    assert await store.finish(finishes=[done]) == [True]

    (exported,) = await store.export_scans()

    assert (exported.scan_id, exported.status, exported.callback_url) == (created.scan_id, ScanStatus.COMPLETE, HOOK)
    assert (await store.get(scan_id=created.scan_id)).callback_url == HOOK


async def test_an_idempotent_replay_answers_the_stored_callback_url(store: Store) -> None:
    first = await store.create(scan=new_scan(idempotency_key="k1", callback_url=HOOK))
    again = await store.create(scan=new_scan(idempotency_key="k1", callback_url=OTHER_HOOK))
    in_batch = await store.create_many(
        scans=[new_scan(idempotency_key="k1"), new_scan(idempotency_key="k2", callback_url=OTHER_HOOK)]
    )

    assert first.is_new and not again.is_new and not in_batch[0].is_new and in_batch[1].is_new
    assert again.scan.scan_id == in_batch[0].scan.scan_id == first.scan.scan_id
    assert again.scan.callback_url == in_batch[0].scan.callback_url == HOOK
    assert in_batch[1].scan.callback_url == OTHER_HOOK
    assert (await store.get(scan_id=in_batch[1].scan.scan_id)).callback_url == OTHER_HOOK


# -- dispatch to the callback endpoint --------------------------------------------------------------


async def test_a_callback_endpoint_reads_back_without_a_url(store: Store) -> None:
    endpoint = callback_endpoint()
    await store.create_endpoint(endpoint=endpoint)

    assert await store.get_endpoint(endpoint_id="callbacks.acme", tenant="acme") == endpoint
    assert (await store.get_endpoint(endpoint_id="callbacks.acme")).url is None
    assert await store.list_endpoints(tenant="acme") == [endpoint]


async def test_a_callback_endpoint_is_owed_only_the_events_of_its_tenants_scans_with_a_callback_url(
    store: Store,
) -> None:
    callbacks = callback_endpoint(event_types=EVERY_TYPE)
    regular = new_endpoint(event_types=EVERY_TYPE)
    for endpoint in (callbacks, regular):
        await store.create_endpoint(endpoint=endpoint)
    called = (await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))).scan
    await store.create(scan=new_scan(tenant="acme"))  # no callback_url: the callback endpoint gets nothing
    await store.create(scan=new_scan(tenant="other", callback_url=OTHER_HOOK))  # another tenant's
    running = await claim_one(store)
    assert running.scan_id == called.scan_id
    events = await settled_events(store, count=4)
    acme = [event for event in events if event.tenant == "acme"]
    of_called = [event for event in acme if event.scan_id == called.scan_id]
    assert [event.status for event in of_called] == [ScanStatus.ACCEPTED, ScanStatus.RUNNING]

    await dispatch_all(store, count=4)
    await dispatch_all(store, count=0)  # again: nothing new

    to_callbacks = await store.list_deliveries(endpoint_id=callbacks.endpoint_id, tenant="acme")
    assert [delivery.event for delivery in to_callbacks] == of_called[::-1]
    assert {delivery.url for delivery in to_callbacks} == {HOOK}
    to_regular = await store.list_deliveries(endpoint_id=regular.endpoint_id)
    assert [delivery.event for delivery in to_regular] == acme[::-1]
    assert {delivery.url for delivery in to_regular} == {None}
    jobs = await claim_deliveries_until(store, worker_id="w1", count=len(acme) + len(of_called))
    for job in jobs:
        stored = await deliveries_by_event(store, job.delivery.endpoint_id)
        assert job.delivery == stored[job.delivery.event.event_id]
        assert job.delivery.url == (HOOK if job.endpoint.url is None else None)
    callback_jobs = [job for job in jobs if job.delivery.endpoint_id == callbacks.endpoint_id]
    assert len(callback_jobs) == 2
    assert all(job.endpoint == callbacks for job in callback_jobs)


async def test_a_callback_endpoint_gets_one_delivery_per_event_however_often_dispatch_runs(store: Store) -> None:
    endpoint = callback_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    await store.create_many(scans=[new_scan(tenant="acme", callback_url=f"{HOOK}?n={n}") for n in range(3)])
    events = await settled_events(store, count=3)

    await dispatch_all(store, count=3)
    for _ in range(2):
        await dispatch_all(store, count=0)  # again: the same events are not owed twice
    (later,) = [c.scan for c in await store.create_many(scans=[new_scan(tenant="acme", callback_url=OTHER_HOOK)])]
    await dispatch_all(store, count=1)
    await dispatch_all(store, count=0)

    listed = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert [delivery.event.event_id for delivery in listed[1:]] == [event.event_id for event in events[::-1]]
    assert [delivery.url for delivery in listed] == [OTHER_HOOK, *(f"{HOOK}?n={n}" for n in (2, 1, 0))]
    assert listed[0].event.scan_id == later.scan_id
    assert len({delivery.event.event_id for delivery in listed}) == 4


async def test_a_callback_endpoint_follows_its_event_types_and_the_time_it_was_made(store: Store) -> None:
    early = (await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))).scan
    (before,) = await settled_events(store, count=1)
    late = truncate_ms(before.at) + timedelta(milliseconds=1)
    endpoint = callback_endpoint(event_types=frozenset({EventType.STARTED}), created_at=late, updated_at=late)
    await store.create_endpoint(endpoint=endpoint)
    await asyncio.sleep(BETWEEN_BATCHES_S)
    later = (
        await store.create(scan=new_scan(tenant="acme", callback_url=OTHER_HOOK))
    ).scan  # its Accepted: not subscribed
    running = await store.claim(worker_id="w1", limit=2, lease_s=LONG_LEASE_S)
    assert {scan.scan_id for scan in running} == {early.scan_id, later.scan_id}
    events = await settled_events(store, count=4)
    started = [event for event in events if event.status is ScanStatus.RUNNING]
    assert min(event.at for event in started) >= endpoint.created_at

    await dispatch_all(store, count=4)

    listed = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert sorted(d.event.event_id for d in listed) == sorted(e.event_id for e in started)
    # The early scan's Accepted event came before the endpoint: not owed; its Running event is.
    assert {delivery.event.scan_id: delivery.url for delivery in listed} == {
        early.scan_id: HOOK,
        later.scan_id: OTHER_HOOK,
    }


async def test_no_callback_delivery_for_a_scan_pruned_before_the_dispatch(store: Store) -> None:
    callbacks = callback_endpoint(event_types=EVERY_TYPE)
    regular = new_endpoint(event_types=EVERY_TYPE)
    for endpoint in (callbacks, regular):
        await store.create_endpoint(endpoint=endpoint)
    await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))
    running = await claim_one(store)
    done = Finish(lease=lease_of(running), outcome=Outcome.COMPLETE, result={})
    assert await store.finish(finishes=[done]) == [True]
    events = await settled_events(store, count=3)
    await lead_retention(store)
    pruned = await store.prune(
        status=ScanStatus.COMPLETE, finished_before=datetime.now(UTC) + FAR_FUTURE, limit=10, owner=PRUNER
    )
    assert [scan.scan_id for scan in pruned] == [running.scan_id]

    await dispatch_all(store, count=3)

    assert await store.list_deliveries(endpoint_id=callbacks.endpoint_id) == []
    assert [d.event for d in await store.list_deliveries(endpoint_id=regular.endpoint_id)] == events[::-1]


# -- delivery retention -----------------------------------------------------------------------------


async def ended_deliveries(store: Store, *, count: int) -> tuple[str, list[str]]:
    """An endpoint owed ``count`` deliveries, each ended in its own batch (delivered, failed, in turn),
    the store's clock moving in between; the endpoint's id and the event ids in the order they ended."""
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    await store.create_many(scans=[new_scan(tenant="acme") for _ in range(count)])
    await settled_events(store, count=count)
    await dispatch_all(store, count=count)
    # Ended newest event first: the order they end in is not the order of their events.
    jobs = (await claim_deliveries_until(store, worker_id="w1", count=count))[::-1]
    outcomes = [DeliveryOutcome.DELIVERED, DeliveryOutcome.FAILED]
    for index, job in enumerate(jobs):
        result = result_of(job, outcomes[index % 2], status_code=200 if index % 2 == 0 else 410)
        assert await store.record_deliveries(results=[result]) == [True]
        await asyncio.sleep(BETWEEN_BATCHES_S)
    return endpoint.endpoint_id, [job.delivery.event.event_id for job in jobs]


def attempted_at(delivery: Delivery) -> datetime:
    assert delivery.last_attempt_at is not None
    return delivery.last_attempt_at


async def test_prune_deliveries_needs_the_retention_role(store: Store) -> None:
    endpoint_id, _ = await ended_deliveries(store, count=2)
    later = datetime.now(UTC) + FAR_FUTURE

    nobody = await store.prune_deliveries(before=later, owner=PRUNER)
    assert await store.lead(role=RETENTION_ROLE, owner="pruner-2", term_s=ROLE_TERM_S)
    another = await store.prune_deliveries(before=later, owner=PRUNER)

    assert (nobody, another) == (0, 0)
    assert len(await store.list_deliveries(endpoint_id=endpoint_id)) == 2
    assert await store.prune_deliveries(before=later, owner="pruner-2") == 2
    assert await store.list_deliveries(endpoint_id=endpoint_id) == []


async def test_prune_deliveries_deletes_the_oldest_ended_ones_before_the_cutoff(store: Store) -> None:
    endpoint_id, ended = await ended_deliveries(store, count=4)
    stored = await deliveries_by_event(store, endpoint_id)
    times = [attempted_at(stored[event_id]) for event_id in ended]
    assert times == sorted(times)
    assert times[1] < times[2], "the store's clock did not move between the two records"
    cutoff = times[1] + (times[2] - times[1]) / 2
    assert stored[ended[0]].status is DeliveryStatus.DELIVERED and stored[ended[1]].status is DeliveryStatus.FAILED
    await lead_retention(store)

    assert await store.prune_deliveries(before=cutoff, owner=PRUNER, limit=1) == 1
    assert set(await deliveries_by_event(store, endpoint_id)) == set(ended[1:])  # the oldest first
    assert await store.prune_deliveries(before=cutoff, owner=PRUNER) == 1
    assert await store.prune_deliveries(before=cutoff, owner=PRUNER) == 0

    assert set(await deliveries_by_event(store, endpoint_id)) == set(ended[2:])
    assert await store.prune_deliveries(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER) == 2
    assert await store.list_deliveries(endpoint_id=endpoint_id) == []


async def test_prune_deliveries_never_deletes_a_pending_one(store: Store) -> None:
    """Pending: never attempted, waiting for a retry after an attempt, or retried by hand after it ended."""
    endpoint = new_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    await store.create_many(scans=[new_scan(tenant="acme") for _ in range(4)])
    events = await settled_events(store, count=4)
    await dispatch_all(store, count=4)
    jobs = {job.delivery.event.event_id: job for job in await claim_deliveries_until(store, worker_id="w1", count=3)}
    fresh = next(event.event_id for event in events if event.event_id not in jobs)
    waiting, retried, done = jobs.values()
    results = [
        result_of(waiting, DeliveryOutcome.RETRY, status_code=503, retry_at=datetime.now(UTC) + timedelta(hours=1)),
        result_of(retried, DeliveryOutcome.FAILED, status_code=500),
        result_of(done, DeliveryOutcome.DELIVERED, status_code=200),
    ]
    assert await store.record_deliveries(results=results) == [True, True, True]
    await store.retry_delivery(endpoint_id=endpoint.endpoint_id, event_id=retried.delivery.event.event_id)
    await lead_retention(store)

    assert await store.prune_deliveries(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER) == 1

    left = await deliveries_by_event(store, endpoint.endpoint_id)
    assert set(left) == {fresh, waiting.delivery.event.event_id, retried.delivery.event.event_id}
    assert {delivery.status for delivery in left.values()} == {DeliveryStatus.PENDING}


async def test_a_callback_delivery_keeps_its_url_through_records_retries_and_pruned_events(store: Store) -> None:
    endpoint = callback_endpoint(event_types=ACCEPTED_ONLY)
    await store.create_endpoint(endpoint=endpoint)
    await store.create(scan=new_scan(tenant="acme", callback_url=HOOK))
    (event,) = await settled_events(store, count=1)
    await dispatch_all(store, count=1)
    (job,) = await claim_deliveries_until(store, worker_id="w1", count=1)
    assert await store.record_deliveries(results=[result_of(job, DeliveryOutcome.FAILED, status_code=500)]) == [True]
    await lead_retention(store)
    assert await store.prune_events(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER) == 1
    assert await store.read_events() == []

    (listed,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    retried = await store.retry_delivery(endpoint_id=endpoint.endpoint_id, event_id=event.event_id)
    (again,) = await claim_deliveries_until(store, worker_id="w2", count=1)

    assert (listed.event, listed.url, listed.status) == (event, HOOK, DeliveryStatus.FAILED)
    assert (retried.event, retried.url, retried.status) == (event, HOOK, DeliveryStatus.PENDING)
    assert again.delivery == retried
    assert again.endpoint == endpoint
    assert await store.record_deliveries(results=[result_of(again, DeliveryOutcome.DELIVERED)]) == [True]
    assert await store.prune_deliveries(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER) == 1
    assert await store.list_deliveries(endpoint_id=endpoint.endpoint_id) == []
