"""SQLite: writes that make no scan claimable never wake the workers idling in ``wait_for_work``.

Every write of ``SQLiteStore`` says whether it woke claimable work; a wrong "yes" makes each idle worker on the
store run an empty claim (tokens, tenant limits, retention, the event log, webhooks: none of them queue a scan).
The data_version watcher checks once when the wait starts and then not for a minute (``wake_interval_s``): only
the store's own writer can end these waits. ``tests/unit/test_sqlite_store.py`` covers the scan writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import EndpointNotFound, ScanqError
from scanq.models import DeliveryOutcome, DeliveryStatus, EventType, Finish, Outcome, ScanStatus, TenantLimits
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.sqlite import SQLiteStore
from tests.contract.events import new_endpoint, new_secret, result_of
from tests.contract.helpers import lease_of, new_scan, new_token

NO_WAKE_S = 60.0
TERM_S = 60.0
# Long enough for a wake-up the write asked for to reach the waiter (the writer answers on the loop at once).
SETTLE_S = 0.2
FAR_FUTURE = timedelta(days=3650)

Write = Callable[[SQLiteStore], Awaitable[object]]


async def ignore_refusal(call: Awaitable[object]) -> None:
    try:
        await call
    except ScanqError:
        pass


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLiteStore]:
    """A store with an endpoint, a token, a finished scan with its events and one delivery, and nothing to claim."""
    async with SQLiteStore(sqlite_url, wake_interval_s=NO_WAKE_S) as opened:
        await opened.create_endpoint(endpoint=new_endpoint(endpoint_id="ep_1", event_types=frozenset(EventType)))
        await opened.create_token(token=new_token(token_id="tok_1"))
        await opened.create(scan=new_scan(tenant="acme"))
        (claimed,) = await opened.claim(worker_id="w", limit=1, lease_s=TERM_S)
        finish = Finish(lease=lease_of(claimed), outcome=Outcome.COMPLETE, result={})
        assert await opened.finish(finishes=[finish]) == [True]
        assert await opened.lead(role=WEBHOOK_ROLE, owner="d", term_s=TERM_S)
        assert await opened.dispatch_events(owner="d") == 3
        yield opened


async def deliver_one(store: SQLiteStore) -> None:
    (job,) = await store.claim_deliveries(worker_id="w", limit=1, lease_s=TERM_S)
    assert await store.record_deliveries(results=[result_of(job, DeliveryOutcome.DELIVERED)]) == [True]


WRITES: dict[str, Write] = {
    "create_token": lambda s: s.create_token(token=new_token()),
    "create_token refused": lambda s: ignore_refusal(s.create_token(token=new_token(token_id="tok_1"))),
    "revoke_token": lambda s: s.revoke_token(token_id="tok_1"),
    "revoke_token refused": lambda s: ignore_refusal(s.revoke_token(token_id="tok_none")),
    "touch_tokens": lambda s: s.touch_tokens(last_used={"tok_1": datetime.now(UTC)}),
    "set_tenant_limits": lambda s: s.set_tenant_limits(limits=TenantLimits(tenant="acme", max_queued=5)),
    "lead": lambda s: s.lead(role=RETENTION_ROLE, owner="p", term_s=TERM_S),
    "resign": lambda s: s.resign(role=WEBHOOK_ROLE, owner="d"),
    "prune": lambda s: prune(s),
    "prune nothing": lambda s: s.prune(
        status=ScanStatus.ERROR, finished_before=datetime.now(UTC), limit=10, owner="nobody"
    ),
    "prune_events": lambda s: prune_events(s),
    "prune_events refused": lambda s: s.prune_events(before=datetime.now(UTC), owner="nobody"),
    "create_endpoint": lambda s: s.create_endpoint(endpoint=new_endpoint()),
    "create_endpoint refused": lambda s: ignore_refusal(s.create_endpoint(endpoint=new_endpoint(endpoint_id="ep_1"))),
    "delete_endpoint": lambda s: s.delete_endpoint(endpoint_id="ep_1"),
    "delete_endpoint refused": lambda s: ignore_refusal(s.delete_endpoint(endpoint_id="ep_none")),
    "rotate_endpoint_secret": lambda s: s.rotate_endpoint_secret(
        endpoint_id="ep_1", secret=new_secret(), previous_until=datetime.now(UTC)
    ),
    "dispatch_events": lambda s: s.dispatch_events(owner="d"),
    "dispatch_events refused": lambda s: s.dispatch_events(owner="nobody"),
    "claim_deliveries": lambda s: claim_every_delivery(s),
    "claim and record deliveries": deliver_one,
    "retry_delivery": lambda s: s.retry_delivery(endpoint_id="ep_1", event_id="1"),
    "retry_delivery refused": lambda s: ignore_refusal(s.retry_delivery(endpoint_id="ep_none", event_id="1")),
    "retry_delivery malformed": lambda s: ignore_refusal(s.retry_delivery(endpoint_id="ep_1", event_id="x")),
}


async def claim_every_delivery(store: SQLiteStore) -> None:
    assert len(await store.claim_deliveries(worker_id="w", limit=10, lease_s=TERM_S)) == 3
    assert await store.claim_deliveries(worker_id="w", limit=10, lease_s=TERM_S) == []


async def prune(store: SQLiteStore) -> None:
    assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=TERM_S)
    pruned = await store.prune(
        status=ScanStatus.COMPLETE, finished_before=datetime.now(UTC) + FAR_FUTURE, limit=10, owner="p"
    )
    assert len(pruned) == 1


async def prune_events(store: SQLiteStore) -> None:
    assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=TERM_S)
    assert await store.prune_events(before=datetime.now(UTC) + FAR_FUTURE, owner="p") == 3


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
async def test_a_write_that_queues_no_scan_leaves_idle_workers_asleep(store: SQLiteStore, write: Write) -> None:
    waiting = asyncio.create_task(store.wait_for_work(timeout_s=NO_WAKE_S))
    await asyncio.sleep(SETTLE_S)
    assert not waiting.done(), "the setup left the waiter awake"

    await write(store)
    await asyncio.sleep(SETTLE_S)

    assert not waiting.done(), "a write that made nothing claimable woke the waiter"
    waiting.cancel()


async def test_a_retried_delivery_is_no_scan_work_either(store: SQLiteStore) -> None:
    """The control: ``retry_delivery`` finds the delivery, so the quiet test above ran the real write."""
    retried = await store.retry_delivery(endpoint_id="ep_1", event_id="1")
    assert retried.status is DeliveryStatus.PENDING
    with pytest.raises(EndpointNotFound):
        await store.retry_delivery(endpoint_id="ep_none", event_id="1")
