"""One-off callbacks delivered by the worker's webhook loops on the MemoryStore, to a real local receiver
that verifies every signature with ``standardwebhooks``; ``--no-webhooks`` still dispatching (so events are
pruned); the retention of ended deliveries.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scanq.config import Settings
from scanq.ids import new_scan_id
from scanq.models import DeliveryStatus, Finish, Lease, NewScan, Outcome
from scanq.store.base import WEBHOOK_ROLE, callback_endpoint_id
from scanq.store.memory import MemoryStore
from scanq.webhooks.callbacks import CallbackEndpoints
from scanq.webhooks.runner import Webhooks
from scanq.worker.retention import prune_deliveries_pass, prune_events_pass
from tests.integration.test_webhook_delivery import free_port
from tests.webhook_receiver import running_receiver

DEADLINE_S = 20.0
FAST: dict[str, Any] = {
    "webhook_allowlist": ("127.0.0.1/32",),
    "webhook_connect_timeout_seconds": 1.0,
    "webhook_timeout_seconds": 2.0,
    "webhook_backoff_base_seconds": 0.05,
    "webhook_concurrency": 8,
}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as opened:
        yield opened


@asynccontextmanager
async def running(store: MemoryStore, **settings: Any) -> AsyncIterator[Webhooks]:
    webhooks = Webhooks(store, Settings(**{**FAST, **settings}), worker_id="w1")
    webhooks.start()
    try:
        yield webhooks
    finally:
        await webhooks.aclose()


async def finish(store: MemoryStore, callback_urls: Sequence[str | None]) -> list[str]:
    """One scan per URL, submitted, claimed and Complete: one terminal event each."""
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), callback_url=url) for url in callback_urls]
    await store.create_many(scans=news)
    claimed = await store.claim(worker_id="scanner", limit=len(news), lease_s=60)
    finishes = [
        Finish(
            lease=Lease(scan_id=s.scan_id, worker_id="scanner", attempt=s.attempt),
            outcome=Outcome.COMPLETE,
            result={"ok": True},
        )
        for s in claimed
    ]
    assert all(await store.finish(finishes=finishes))
    return [new.scan_id for new in news]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {DEADLINE_S:.0f}s") from None


async def test_each_scan_ends_in_one_signed_callback_at_its_own_url(store: MemoryStore) -> None:
    endpoint = await CallbackEndpoints(store).get_or_create("default")
    with running_receiver(free_port(), endpoint.secret) as receiver:
        one, two = receiver.url_for("/one"), receiver.url_for("/two?ticket=7")
        scan_ids = await finish(store, [one, two, one, None])

        async with running(store):

            async def all_delivered() -> bool:
                found = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=10)
                return len(found) == 3 and all(d.status is DeliveryStatus.DELIVERED for d in found)

            await eventually(all_delivered, "every callback")
            await asyncio.sleep(0.3)  # a fourth (the scan without a callback_url) would have come by now
            listed = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=10)

    assert receiver.rejected == 0 and len(receiver.snapshot()) == 3
    paths = {item.body["data"]["scan_id"]: item.path for item in receiver.snapshot()}
    assert paths == {scan_ids[0]: "/one", scan_ids[1]: "/two?ticket=7", scan_ids[2]: "/one"}
    assert all(item.body["type"] == "scan.completed" for item in receiver.snapshot())
    assert len(listed) == 3
    assert sorted((d.event.scan_id, d.url) for d in listed) == sorted(zip(scan_ids[:3], [one, two, one], strict=True))


async def test_a_dead_callback_receiver_holds_up_only_its_own_callbacks(store: MemoryStore) -> None:
    endpoint = await CallbackEndpoints(store).get_or_create("default")
    dead = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens: refused
    with running_receiver(free_port(), endpoint.secret) as receiver:
        await finish(store, [dead] * 10 + [receiver.url_for("/live")] * 10)
        async with running(store):

            async def live_arrived() -> bool:
                return len(receiver.per_id()) == 10

            await eventually(live_arrived, "the live receiver's callbacks")
        found = await store.list_deliveries(endpoint_id=callback_endpoint_id("default"), limit=100)
    assert all(d.status is not DeliveryStatus.DELIVERED for d in found if d.url == dead)
    assert receiver.rejected == 0


async def test_no_webhooks_still_dispatches_so_events_are_pruned_and_sends_nothing(store: MemoryStore) -> None:
    endpoint = await CallbackEndpoints(store).get_or_create("default")
    with running_receiver(free_port(), endpoint.secret) as receiver:
        await finish(store, [receiver.url_for("/cb")] * 3)
        async with running(store, webhooks=False) as webhooks:
            assert len(webhooks.tasks) == 1  # the dispatcher only

            async def dispatched() -> bool:
                return len(await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=10)) == 3

            await eventually(dispatched, "the events dispatched")
            await asyncio.sleep(0.3)
        assert receiver.snapshot() == []
    assert all(d.attempts == 0 for d in await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=10))
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await prune_events_pass(store, before=later, owner="retainer") == 3 * 3  # accepted, started, completed


async def test_ended_deliveries_are_pruned_after_their_retention_pending_ones_never(store: MemoryStore) -> None:
    endpoint = await CallbackEndpoints(store).get_or_create("default")
    with running_receiver(free_port(), endpoint.secret) as receiver:
        await finish(store, [receiver.url_for("/cb")] * 3)
        async with running(store):

            async def delivered() -> bool:
                return len(receiver.per_id()) == 3

            await eventually(delivered, "the callbacks")
    await finish(store, [receiver.url_for("/cb")])
    assert await store.lead(role=WEBHOOK_ROLE, owner="dispatcher", term_s=60)
    while await store.dispatch_events(owner="dispatcher"):
        pass  # its delivery is pending: no worker sends it
    before = datetime.now(UTC) + timedelta(seconds=1)
    assert await prune_deliveries_pass(store, before=before - timedelta(hours=1), owner="retainer", batch=2) == 0
    assert await prune_deliveries_pass(store, before=before, owner="retainer", batch=2) == 3
    (left,) = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, limit=10)
    assert left.status is DeliveryStatus.PENDING
