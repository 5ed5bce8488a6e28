"""Helpers of the contract files about the event log and webhooks (rules 10 and 11).

Reads wait for what they expect with a deadline instead of reading once: a backend returns an
event only once it is settled (``read_events``), which may take a moment after the write returned.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from scanq.models import (
    DEFAULT_WEBHOOK_EVENTS,
    Delivery,
    DeliveryJob,
    DeliveryOutcome,
    DeliveryResult,
    Scan,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE, WEBHOOK_ROLE
from tests.contract.helpers import CLOCK_SLACK, DEADLINE_S, LONG_LEASE_S, assert_same_instant, now_ms

DISPATCHER = "dispatcher-1"
PRUNER = "pruner-1"
ROLE_TERM_S = 30.0
POLL_S = 0.02
FAR_FUTURE = timedelta(days=3650)


def new_secret() -> str:
    """A fresh secret in the Standard Webhooks form (``whsec_`` and base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_endpoint(**fields: Any) -> WebhookEndpoint:
    """An endpoint of tenant ``acme`` with a fresh id and secret; ``fields`` override.

    It is created ``CLOCK_SLACK`` in the past, so it existed before every event the test makes
    whatever clock the store takes "now" from (``endpoint.created_at <= event.at``).
    """
    created = now_ms() - CLOCK_SLACK
    return WebhookEndpoint(
        **{
            "endpoint_id": f"ep_{secrets.token_hex(8)}",
            "tenant": "acme",
            "url": "https://hooks.example.com/scanq",
            "event_types": DEFAULT_WEBHOOK_EVENTS,
            "secret": new_secret(),
            "created_at": created,
            "updated_at": created,
            **fields,
        }
    )


def truncate_ms(moment: datetime) -> datetime:
    """``moment`` without its microseconds below the millisecond (the precision every backend keeps)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def read_all_events(
    store: Store, *, after: str | None = None, page: int = MAX_PAGE_SIZE, **filters: Any
) -> list[ScanEvent]:
    """Every event settled now after ``after`` (None: the oldest kept), page by page; ``filters`` as ``read_events``."""
    events: list[ScanEvent] = []
    while batch := await store.read_events(after=after, limit=page, **filters):
        events.extend(batch)
        after = batch[-1].event_id
    return events


async def settled_events(store: Store, *, count: int, after: str | None = None, **filters: Any) -> list[ScanEvent]:
    """Every event after ``after`` (``filters`` as ``read_events``), once at least ``count`` are settled."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            events = await read_all_events(store, after=after, **filters)
            if len(events) >= count:
                return events
            await asyncio.sleep(POLL_S)


def assert_event(event: ScanEvent, scan: Scan, status: ScanStatus) -> None:
    """``event`` is the one the transition that left ``scan`` as it is recorded, leading to ``status``."""
    assert event.event_id and isinstance(event.event_id, str)
    assert (event.scan_id, event.tenant, event.status, event.attempt) == (
        scan.scan_id,
        scan.tenant,
        status,
        scan.attempt,
    ), (event, scan)
    assert scan.status == status
    assert isinstance(event.status, ScanStatus)
    assert_same_instant(event.at, scan.updated_at)


def steps(events: Sequence[ScanEvent], scan_id: str) -> list[tuple[ScanStatus, int]]:
    """The (status, attempt) of each event of one scan, in event order."""
    return [(event.status, event.attempt) for event in events if event.scan_id == scan_id]


async def dispatch_all(store: Store, *, count: int, owner: str = DISPATCHER) -> int:
    """Take ``WEBHOOK_ROLE`` and dispatch until at least ``count`` events were passed; return how many were."""
    assert await store.lead(role=WEBHOOK_ROLE, owner=owner, term_s=ROLE_TERM_S)
    passed = 0
    async with asyncio.timeout(DEADLINE_S):
        while True:
            done = await store.dispatch_events(owner=owner)
            passed += done
            if passed >= count and done == 0:
                return passed
            if done == 0:
                await asyncio.sleep(POLL_S)


async def lead_retention(store: Store, *, owner: str = PRUNER) -> None:
    assert await store.lead(role=RETENTION_ROLE, owner=owner, term_s=ROLE_TERM_S)


async def deliveries_by_event(store: Store, endpoint_id: str) -> dict[str, Delivery]:
    """The endpoint's deliveries by event id (every one: there are never more than a page in these tests)."""
    return {d.event.event_id: d for d in await store.list_deliveries(endpoint_id=endpoint_id, limit=MAX_PAGE_SIZE)}


async def claim_deliveries_until(
    store: Store, *, worker_id: str, count: int, lease_s: float = LONG_LEASE_S
) -> list[DeliveryJob]:
    """Claim until ``worker_id`` holds ``count`` deliveries (with a deadline); the jobs in claim order."""
    jobs: list[DeliveryJob] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(jobs) < count:
            jobs.extend(await store.claim_deliveries(worker_id=worker_id, limit=count - len(jobs), lease_s=lease_s))
            if len(jobs) < count:
                await asyncio.sleep(POLL_S)
    assert len(jobs) == count
    return jobs


def result_of(job: DeliveryJob, outcome: DeliveryOutcome, **fields: Any) -> DeliveryResult:
    """The report of ``job``'s worker with ``outcome``; ``fields`` (``status_code``, ``error``, ``retry_at``) add."""
    return DeliveryResult(
        endpoint_id=job.delivery.endpoint_id,
        event_id=job.delivery.event.event_id,
        worker_id=job.worker_id,
        outcome=outcome,
        **fields,
    )
