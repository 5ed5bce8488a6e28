"""Rows that come back as they went in, for the fields a fresh row leaves empty.

A token is usually created unused and unrevoked, an endpoint without a previous secret, and a delivery is due
when it is made: a backend that dropped those fields on the way in, or read one column for another, would pass
every test that only uses fresh rows. An import of tokens (``scanq tokens``), an endpoint restored with its
rotation in progress and a delivery retried later must keep them.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scanq.models import DeliveryOutcome, DeliveryStatus, EventType
from scanq.store import Store
from tests.contract.events import claim_deliveries_until, dispatch_all, new_endpoint, new_secret, result_of
from tests.contract.helpers import assert_same_instant, new_scan, new_token, now_ms


async def test_a_token_created_used_and_revoked_round_trips(store: Store) -> None:
    created = now_ms() - timedelta(days=2)
    token = new_token(
        created_at=created, last_used_at=created + timedelta(hours=1), revoked_at=created + timedelta(days=1)
    )

    await store.create_token(token=token)

    assert await store.find_token(secret_hash=token.secret_hash) == token


async def test_an_endpoint_created_in_the_middle_of_a_rotation_round_trips(store: Store) -> None:
    endpoint = new_endpoint(previous_secret=new_secret(), previous_secret_until=now_ms() + timedelta(hours=1))

    await store.create_endpoint(endpoint=endpoint)

    assert await store.get_endpoint(endpoint_id=endpoint.endpoint_id) == endpoint


async def test_a_retried_delivery_keeps_when_it_was_made_and_is_due_later(store: Store) -> None:
    endpoint = new_endpoint(event_types=frozenset({EventType.ACCEPTED}))
    await store.create_endpoint(endpoint=endpoint)
    await store.create(scan=new_scan(tenant=endpoint.tenant))
    await dispatch_all(store, count=1)
    (job,) = await claim_deliveries_until(store, worker_id="w1", count=1)
    later = datetime.now(UTC) + timedelta(hours=1)

    retry = result_of(job, DeliveryOutcome.RETRY, status_code=503, retry_at=later)
    assert await store.record_deliveries(results=[retry]) == [True]
    (delivery,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)

    assert delivery.status is DeliveryStatus.PENDING
    assert_same_instant(delivery.created_at, job.delivery.created_at)
    assert_same_instant(delivery.next_attempt_at, later)
