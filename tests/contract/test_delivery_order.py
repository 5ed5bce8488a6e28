"""One claim of webhook deliveries hands them over in claim order: the earliest due first, then event order.

A delivery worker sends the deliveries of one claim in the order it gets them, so a receiver sees a scan's
events in the order they happened. ``test_webhook_store.py`` checks which deliveries a claim takes; here one
claim takes several that are due at the same moment (one dispatch makes them all), to several endpoints.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from scanq.models import EventType
from scanq.store import Store
from tests.contract.events import dispatch_all, new_endpoint, settled_events
from tests.contract.helpers import LONG_LEASE_S, new_scan


async def test_one_claim_returns_its_deliveries_in_event_order(store: Store) -> None:
    endpoints = [new_endpoint(endpoint_id=f"ep_{name}", event_types=frozenset(EventType)) for name in ("z", "a")]
    for endpoint in endpoints:
        await store.create_endpoint(endpoint=endpoint)
    first, second = new_scan(tenant="acme"), new_scan(tenant="acme")
    await store.create_many(scans=[first, second])
    (running,) = await store.claim(worker_id="w", limit=1, lease_s=LONG_LEASE_S)
    assert running.scan_id == first.scan_id
    # Event order: first accepted, second accepted, first running; not the order of the scans' ids.
    events = await settled_events(store, count=3)
    assert [event.scan_id for event in events] == [first.scan_id, second.scan_id, first.scan_id]
    await dispatch_all(store, count=3)

    jobs = await store.claim_deliveries(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    assert [job.delivery.event for job in jobs] == [event for event in events for _ in endpoints]
    for at in range(0, len(jobs), len(endpoints)):
        assert {job.delivery.endpoint_id for job in jobs[at : at + len(endpoints)]} == {"ep_z", "ep_a"}
