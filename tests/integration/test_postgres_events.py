"""The PostgreSQL event log returns only settled events, and the statements that read and write it stay cheap.

A bigserial is taken in insert order, not commit order: a reader that went by it
alone could pass an event whose transaction is still open and never come back
for it. The store orders by (txid, seq) and reads only below its snapshot's xmin.
Here a transaction is held open on a raw connection (the transition statement
the store runs, inside ``BEGIN``): its event is withheld, and so is every event
ordered after it, even one committed meanwhile; after the commit both appear,
in log order, for a reader that goes on after the last event it had read.
The contract suite (``tests/contract/test_events.py``, ``test_webhook_store.py``)
checks the rest on every backend.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from scanq.ids import new_scan_id
from scanq.models import (
    DeliveryOutcome,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    Finish,
    Lease,
    NewScan,
    Outcome,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.postgres import EVENTS_CHANNEL, PostgresStore, statements
from tests.integration.plans import explain, indexes_used, nodes

DEADLINE_S = 10.0
LEASE_S = 30.0
POLL_S = 60.0  # the fallback poll: a wait that ends well before it was woken by a notification
EVENT_ROWS = 20_000


def _scan(**fields: Any) -> NewScan:
    return NewScan(**{"scan_id": new_scan_id(), "created_at": datetime.now(UTC), **fields})


def _endpoint(**fields: Any) -> WebhookEndpoint:
    now = datetime.now(UTC) - timedelta(minutes=1)  # before the events of the test
    return WebhookEndpoint(
        **{
            "endpoint_id": f"ep_{secrets.token_hex(8)}",
            "tenant": "acme",
            "url": "https://hooks.example.com/scanq",
            "event_types": frozenset({EventType.COMPLETED, EventType.CANCELLED}),
            "secret": "whsec_c2VjcmV0",
            "created_at": now,
            "updated_at": now,
            **fields,
        }
    )


async def _events_until(store: PostgresStore, *, after: str | None, count: int) -> list[ScanEvent]:
    """Read after ``after`` until ``count`` events have settled (another test's open transaction on the
    same server may hold them back a moment: transaction ids are the server's)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            events = await store.read_events(after=after)
            if len(events) >= count:
                return events
            await asyncio.sleep(0.02)


@pytest.fixture
async def store(postgres_database_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_database_url) as opened:
        yield opened


@pytest.fixture
async def raw(postgres_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(postgres_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def test_an_open_transaction_holds_back_its_event_and_every_later_one(
    store: PostgresStore, raw: asyncpg.Connection[Any]
) -> None:
    first = (await store.create(scan=_scan())).scan
    [accepted] = await _events_until(store, after=None, count=1)
    assert (accepted.scan_id, accepted.status) == (first.scan_id, ScanStatus.ACCEPTED)

    transaction = raw.transaction()
    await transaction.start()
    try:
        # The store's own cancel statement, in a transaction left open: its event has the smaller txid.
        [row] = await raw.fetch(statements.CANCEL, first.scan_id, None, None, None)
        assert row["status"] == "Cancelled"
        # Committed after the open one began writing: a larger txid, settled only once the open one ends.
        second = (await store.create(scan=_scan())).scan
        assert (await store.get(scan_id=second.scan_id)).status == ScanStatus.ACCEPTED  # committed

        assert await store.read_events(after=accepted.event_id) == []
        assert [event.event_id for event in await store.read_events()] == [accepted.event_id]
        head = await store.events_head()
    finally:
        await transaction.commit()

    cancelled, later = await _events_until(store, after=accepted.event_id, count=2)
    assert (cancelled.scan_id, cancelled.status) == (first.scan_id, ScanStatus.CANCELLED)
    assert (later.scan_id, later.status) == (second.scan_id, ScanStatus.ACCEPTED)
    # The head taken while they were held back is before both: a reader from there misses neither.
    assert [event.event_id for event in await _events_until(store, after=head, count=2)] == [
        cancelled.event_id,
        later.event_id,
    ]


async def test_a_rolled_back_transition_leaves_no_event_and_releases_the_later_ones(
    store: PostgresStore, raw: asyncpg.Connection[Any]
) -> None:
    first = (await store.create(scan=_scan())).scan
    [accepted] = await _events_until(store, after=None, count=1)
    transaction = raw.transaction()
    await transaction.start()
    try:
        await raw.fetch(statements.CANCEL, first.scan_id, None, None, None)
        second = (await store.create(scan=_scan())).scan
        assert await store.read_events(after=accepted.event_id) == []
    finally:
        await transaction.rollback()
    [later] = await _events_until(store, after=accepted.event_id, count=1)
    assert (later.scan_id, later.status) == (second.scan_id, ScanStatus.ACCEPTED)
    assert (await store.get(scan_id=first.scan_id)).status == ScanStatus.ACCEPTED


async def test_every_transition_statement_writes_its_event(store: PostgresStore) -> None:
    scan = (await store.create(scan=_scan(max_attempts=2))).scan
    [running] = await store.claim(worker_id="w1", limit=1, lease_s=LEASE_S)
    lease = Lease(scan_id=scan.scan_id, worker_id="w1", attempt=1)
    assert await store.finish(finishes=[Finish(lease=lease, outcome=Outcome.RETRY, error="flaky")]) == [True]
    [again] = await store.claim(worker_id="w1", limit=1, lease_s=LEASE_S)
    assert await store.release(leases=[Lease(scan_id=scan.scan_id, worker_id="w1", attempt=2)]) == 1
    [third] = await store.claim(worker_id="w2", limit=1, lease_s=0.01, max_per_target=1)  # claim_capped
    await asyncio.sleep(0.05)
    assert await store.requeue_expired() == 1
    other = (await store.create(scan=_scan())).scan
    cancelled = await store.cancel(scan_id=other.scan_id)

    events = await _events_until(store, after=None, count=9)
    assert [(event.scan_id, event.status, event.attempt) for event in events] == [
        (scan.scan_id, ScanStatus.ACCEPTED, 0),
        (scan.scan_id, ScanStatus.RUNNING, 1),
        (scan.scan_id, ScanStatus.ACCEPTED, 1),  # the retry
        (scan.scan_id, ScanStatus.RUNNING, 2),
        (scan.scan_id, ScanStatus.ACCEPTED, 1),  # released: the attempt does not count
        (scan.scan_id, ScanStatus.RUNNING, 2),
        (scan.scan_id, ScanStatus.ERROR, 2),  # the lease expired on the last attempt
        (other.scan_id, ScanStatus.ACCEPTED, 0),
        (other.scan_id, ScanStatus.CANCELLED, 0),
    ]
    assert (events[1].at, events[3].at, events[5].at) == (running.updated_at, again.updated_at, third.updated_at)
    assert events[8].at == cancelled.updated_at
    assert (await store.get(scan_id=scan.scan_id)).updated_at == events[6].at
    assert len({event.event_id for event in events}) == 9


async def test_wait_for_events_wakes_on_a_transition_in_another_process(postgres_database_url: str) -> None:
    async with (
        PostgresStore(postgres_database_url, poll_interval_s=POLL_S) as waiter,
        PostgresStore(postgres_database_url) as writer,
    ):
        await writer.create(scan=_scan())
        async with asyncio.timeout(DEADLINE_S):  # the first wait may return while LISTEN starts
            while True:
                started = asyncio.get_running_loop().time()
                await waiter.wait_for_events(timeout_s=0.2)
                if asyncio.get_running_loop().time() - started >= 0.15:
                    break
        waiting = asyncio.create_task(waiter.wait_for_events(timeout_s=POLL_S))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await writer.claim(worker_id="w1", limit=1, lease_s=LEASE_S)  # no work notification: only the event's
        await asyncio.wait_for(waiting, DEADLINE_S)


async def test_every_transition_notifies_the_events_channel_once(
    store: PostgresStore, raw: asyncpg.Connection[Any]
) -> None:
    received: list[str] = []
    fenced = asyncio.Event()

    def listen(*args: object) -> None:
        if args[-1] == "fence":
            fenced.set()
        else:
            received.append(str(args[-1]))

    await raw.add_listener(EVENTS_CHANNEL, listen)
    await store.create_many(scans=[_scan() for _ in range(5)])
    await store.claim(worker_id="w1", limit=5, lease_s=LEASE_S)
    await store.claim(worker_id="w1", limit=5, lease_s=LEASE_S)  # nothing left: no event, no notification
    await raw.execute("SELECT pg_notify($1, 'fence')", EVENTS_CHANNEL)
    await asyncio.wait_for(fenced.wait(), DEADLINE_S)
    assert len(received) == 2


async def test_dispatch_fans_out_once_and_claims_never_overlap(store: PostgresStore) -> None:
    endpoint = _endpoint()
    await store.create_endpoint(endpoint=endpoint)
    await store.create_endpoint(endpoint=_endpoint(tenant="other"))
    scans = [(await store.create(scan=_scan(tenant="acme"))).scan for _ in range(4)]
    await store.create(scan=_scan(tenant="other"))
    for scan in scans:
        await store.cancel(scan_id=scan.scan_id)
    await _events_until(store, after=None, count=9)

    assert await store.dispatch_events(owner="d1") == 0  # not the role's holder
    assert await store.lead(role=WEBHOOK_ROLE, owner="d1", term_s=30)
    assert await store.dispatch_events(owner="d1", limit=3) == 3
    assert await store.dispatch_events(owner="d1") == 6
    assert await store.dispatch_events(owner="d1") == 0

    first, second = await asyncio.gather(
        store.claim_deliveries(worker_id="a", limit=3, lease_s=LEASE_S),
        store.claim_deliveries(worker_id="b", limit=3, lease_s=LEASE_S),
    )
    claimed = first + second
    assert len(claimed) == 4  # the acme endpoint's four Cancelled events; Accepted is not subscribed
    assert len({job.delivery.event.event_id for job in claimed}) == 4
    assert {job.endpoint.endpoint_id for job in claimed} == {endpoint.endpoint_id}
    assert all(job.delivery.event.status == ScanStatus.CANCELLED for job in claimed)
    assert await store.claim_deliveries(worker_id="c", limit=10, lease_s=LEASE_S) == []

    done, retry, *_ = claimed
    answers = await store.record_deliveries(
        results=[
            DeliveryResult(
                endpoint_id=endpoint.endpoint_id,
                event_id=done.delivery.event.event_id,
                worker_id=done.worker_id,
                outcome=DeliveryOutcome.DELIVERED,
                status_code=204,
            ),
            DeliveryResult(
                endpoint_id=endpoint.endpoint_id,
                event_id=retry.delivery.event.event_id,
                worker_id="someone else",
                outcome=DeliveryOutcome.FAILED,
            ),
        ]
    )
    assert answers == [True, False]
    delivered = await store.list_deliveries(endpoint_id=endpoint.endpoint_id, status=DeliveryStatus.DELIVERED)
    assert [(d.event.event_id, d.attempts, d.last_status_code) for d in delivered] == [
        (done.delivery.event.event_id, 1, 204)
    ]
    listed = await store.list_deliveries(endpoint_id=endpoint.endpoint_id)
    assert [d.event.event_id for d in listed] == sorted(
        (d.event.event_id for d in listed), key=lambda event_id: tuple(map(int, event_id.split("."))), reverse=True
    )
    again = await store.retry_delivery(endpoint_id=endpoint.endpoint_id, event_id=done.delivery.event.event_id)
    assert (again.status, again.attempts) == (DeliveryStatus.PENDING, 1)

    await store.delete_endpoint(endpoint_id=endpoint.endpoint_id)
    assert await store.claim_deliveries(worker_id="c", limit=10, lease_s=LEASE_S) == []


async def test_prune_events_keeps_what_the_dispatcher_has_not_passed(store: PostgresStore) -> None:
    for _ in range(3):
        await store.create(scan=_scan())
    await _events_until(store, after=None, count=3)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await store.lead(role=RETENTION_ROLE, owner="r", term_s=30)
    assert await store.prune_events(before=later, owner="r") == 0  # nothing dispatched yet
    assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=30)
    assert await store.dispatch_events(owner="d", limit=2) == 2
    assert await store.prune_events(before=later, owner="someone else") == 0
    assert await store.prune_events(before=later, owner="r") == 2
    assert len(await store.read_events()) == 1


@pytest.fixture
async def many_events(postgres_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute(
            "INSERT INTO scan_events (scan_id, tenant, status, attempt, at)"
            " SELECT gen_random_uuid(), 't' || (i % 10), 'Complete', 1, now() FROM generate_series(1, $1::int) AS i",
            EVENT_ROWS,
        )
        await conn.execute("VACUUM ANALYZE scan_events")
        yield conn
    finally:
        await conn.close()


@pytest.mark.slow
async def test_reads_and_prunes_walk_an_index_range(many_events: asyncpg.Connection[Any]) -> None:
    middle = await many_events.fetchrow(
        "SELECT txid, seq, scan_id FROM scan_events ORDER BY seq OFFSET $1 LIMIT 1", 100
    )
    assert middle is not None
    reading = await explain(many_events, statements.READ_EVENTS, middle["txid"], middle["seq"], 100, None, None)
    assert indexes_used(reading) == {"scan_events_pkey"}
    assert not [node for node in nodes(reading) if node["Node Type"] in ("Seq Scan", "Sort")]
    one_scan = await explain(many_events, statements.READ_SCAN_EVENTS, 0, 0, 100, None, None, middle["scan_id"])
    assert "scan_events_by_scan" in indexes_used(one_scan)
    assert not [node for node in nodes(one_scan) if node["Node Type"] == "Seq Scan"]
    await many_events.execute("UPDATE webhook_cursor SET txid = $1, seq = $2", middle["txid"], middle["seq"])
    await many_events.execute(
        "INSERT INTO scanq_leaders (role, owner, expires_at) VALUES ($1, 'r', now() + interval '1 minute')",
        RETENTION_ROLE,
    )
    pruning = await explain(
        many_events, statements.PRUNE_EVENTS, datetime.now(UTC) + timedelta(hours=1), "r", RETENTION_ROLE, 50
    )
    assert not [
        node for node in nodes(pruning) if node["Node Type"] == "Seq Scan" and node["Relation Name"] == "scan_events"
    ]
    deleted = next(
        node
        for node in nodes(pruning)
        if node["Node Type"] == "ModifyTable" and node.get("Relation Name") == "scan_events"
    )
    assert deleted["Actual Rows"] == 50  # the window, no further
