"""A ``limit`` of one means one: every paged or batched call takes exactly one item when asked for one.

A worker or a retention pass asks for one at a time to go slowly, a tool pages through one by one; taking two
would skip or delete more than it was told to.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from scanq.models import DeliveryOutcome, DeliveryResult, EventType, Outcome, ScanStatus
from scanq.store import Store
from scanq.store.base import WEBHOOK_ROLE
from tests.contract.events import (
    DISPATCHER,
    FAR_FUTURE,
    PRUNER,
    ROLE_TERM_S,
    claim_deliveries_until,
    dispatch_all,
    lead_retention,
    new_endpoint,
    read_all_events,
    result_of,
    settled_events,
)
from tests.contract.finished import finish_scans
from tests.contract.helpers import LONG_LEASE_S, new_scan


async def test_events_are_read_dispatched_and_pruned_one_at_a_time(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(3)])
    events = await settled_events(store, count=3)
    assert await store.read_events(limit=1) == events[:1]
    assert await store.read_events(after=events[0].event_id, limit=1) == events[1:2]

    assert await store.lead(role=WEBHOOK_ROLE, owner=DISPATCHER, term_s=ROLE_TERM_S)
    assert await store.dispatch_events(owner=DISPATCHER, limit=1) == 1
    assert await dispatch_all(store, count=2) == 2
    await lead_retention(store)
    assert await store.prune_events(before=datetime.now(UTC) + FAR_FUTURE, owner=PRUNER, limit=1) == 1

    assert await read_all_events(store) == events[1:]


async def test_the_dispatcher_passes_one_event_when_asked_for_one(store: Store) -> None:
    await store.create_endpoint(endpoint=new_endpoint(tenant="acme", event_types=frozenset({EventType.ACCEPTED})))
    await store.create_many(scans=[new_scan(tenant="acme") for _ in range(3)])
    await settled_events(store, count=3)
    assert await store.lead(role=WEBHOOK_ROLE, owner=DISPATCHER, term_s=ROLE_TERM_S)

    assert await store.dispatch_events(owner=DISPATCHER, limit=1) == 1
    assert len(await store.claim_deliveries(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)) == 1
    assert await store.dispatch_events(owner=DISPATCHER) == 2


async def test_deliveries_are_listed_one_at_a_time(store: Store) -> None:
    endpoint = new_endpoint(tenant="acme", event_types=frozenset({EventType.ACCEPTED}))
    await store.create_endpoint(endpoint=endpoint)
    await store.create_many(scans=[new_scan(tenant="acme") for _ in range(3)])
    events = await settled_events(store, count=3)
    await dispatch_all(store, count=3)

    (newest,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=1)

    assert newest.event == events[-1]


async def test_retention_prunes_one_scan_when_asked_for_one(store: Store) -> None:
    done = await finish_scans(store, [Outcome.COMPLETE, Outcome.COMPLETE])
    await lead_retention(store)
    cutoff = datetime.now(UTC) + FAR_FUTURE

    pruned = await store.prune(status=ScanStatus.COMPLETE, finished_before=cutoff, limit=1, owner=PRUNER)

    assert len(pruned) == 1 and pruned[0].scan_id in {scan.scan_id for scan in done}
    assert (await store.stats()).counts[ScanStatus.COMPLETE] == 1


async def test_tenant_queues_lists_one_tenant_when_asked_for_one(store: Store) -> None:
    await store.create_many(scans=[new_scan(tenant="big"), new_scan(tenant="big"), new_scan(tenant="small")])

    (only,) = await store.tenant_queues(limit=1)

    assert (only.tenant, only.accepted) == ("big", 2)


async def test_a_result_for_an_event_id_the_store_never_made_is_not_applied(store: Store) -> None:
    endpoint = new_endpoint(tenant="acme", event_types=frozenset({EventType.ACCEPTED}))
    await store.create_endpoint(endpoint=endpoint)
    await store.create(scan=new_scan(tenant="acme"))
    await settled_events(store, count=1)
    await dispatch_all(store, count=1)
    (job,) = await claim_deliveries_until(store, worker_id="w1", count=1)
    malformed = DeliveryResult(
        endpoint_id=endpoint.endpoint_id, event_id="no-such-event", worker_id="w1", outcome=DeliveryOutcome.DELIVERED
    )

    assert await store.record_deliveries(results=[malformed, result_of(job, DeliveryOutcome.DELIVERED)]) == [
        False,
        True,
    ]
