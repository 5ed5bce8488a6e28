"""The Store contract's event log (rule 10) and webhook outbox (rule 11), two protocols ``Store`` extends.

Rules (``tests/contract/test_events.py`` and ``test_webhook_store.py`` check each, on every backend):

10. Events: every status transition appends one ``ScanEvent`` in the same
    transaction as the transition (so an event is never lost nor invented):
    ``create``/``create_many`` Accepted for each new scan (not for an
    idempotent replay); ``claim`` Running; ``finish`` the status it leads to
    (Complete, Error, Cancelled, or Accepted for a retry); ``release``,
    ``requeue_expired`` and ``cancel`` likewise (a cancel request on a Running
    scan changes no status and records nothing). ``at`` is the transition's
    ``updated_at``, ``attempt`` the scan's attempt after it. ``read_events``
    returns them in one total order, the order of ``event_id``, and only once
    settled: an event is returned only when no event before it in that order
    can still appear (an uncommitted transaction's events are waited for, not
    skipped), so a reader that continues ``after`` the last event it read
    never misses one. ``wait_for_events`` wakes soon after any process writes
    one. Events are kept until ``prune_events`` removes them.
11. Webhooks: endpoints belong to a tenant (another tenant's is answered as
    unknown, ``EndpointNotFound``). ``dispatch_events`` (only while the caller
    holds ``WEBHOOK_ROLE``) turns each settled event after the stored dispatch
    cursor into one pending ``Delivery`` per endpoint of the event's tenant that
    subscribes to its type and existed when it happened (``endpoint.created_at
    <= event.at``), at most one per (endpoint, event) however often it runs,
    and moves the cursor past them in the same write. An endpoint without a
    url (a tenant's callback endpoint, ``callback_endpoint_id``) gets a
    delivery only for the events of scans that have a ``callback_url`` (the
    scan row as it is at dispatch; none once the scan is pruned), and that
    delivery's ``url`` is the scan's ``callback_url``; every other delivery's
    ``url`` is None (it goes to its endpoint's). ``claim_deliveries``
    leases due pending deliveries to one worker at a time (a lease that
    expires makes the delivery claimable again: at-least-once);
    ``record_deliveries`` is fenced by that lease, and of several results
    for one delivery by one worker in a call the first wins
    (``delivery_rules``). Deleting an endpoint deletes its deliveries.
    Deliveries carry their event's fields and outlive it: ``prune_events``
    never deletes one; ``prune_deliveries`` deletes ended ones (delivered or
    failed) by the time of their last attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from scanq.models import Delivery, DeliveryJob, DeliveryResult, DeliveryStatus, ScanEvent, ScanStatus, WebhookEndpoint

MAX_PAGE_SIZE = 1000
"""The most scans, events or deliveries one read answers."""


def callback_endpoint_id(tenant: str) -> str:
    """The store id of ``tenant``'s callback endpoint (``url`` None; at most one per tenant).

    It is created with ``create_endpoint`` like any other and receives, signed with its secret,
    the events of the tenant's scans that carry a ``callback_url`` (rule 11).
    """
    return f"callbacks.{tenant}"


class EventLog(Protocol):
    """Every status transition of a scan, in one order, settled before it is read (rule 10)."""

    async def read_events(
        self,
        *,
        after: str | None = None,
        tenant: str | None = None,
        scan_id: str | None = None,
        statuses: frozenset[ScanStatus] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[ScanEvent]:
        """Settled events after the event ``after`` (None: from the oldest kept), in event order.

        Only those of ``tenant`` / ``scan_id`` / with a status in ``statuses`` when given (None: any).
        ``limit`` is capped at ``MAX_PAGE_SIZE``; fewer than ``limit`` does not mean the end: call
        again after the last one. ``after`` may name an event already pruned (reading goes on from
        the next kept one). Raise ``ValidationError`` for an ``after`` this store cannot have made.
        """

    async def events_head(self) -> str:
        """A position to read from "now": ``read_events(after=events_head())`` returns only events
        that settle after this call (none of those already settled). A valid ``after`` for ``read_events``."""

    async def wait_for_events(self, *, timeout_s: float) -> None:
        """Sleep until a new event may have been written (by any process), or ``timeout_s`` passed.

        An early return without a new event is allowed, as for ``wait_for_work``.
        """

    async def prune_events(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """Delete up to ``limit`` of the oldest events with ``at`` before ``before``; return how many.

        Only while ``owner`` holds ``RETENTION_ROLE`` (else 0), and never an event the webhook dispatch
        cursor has not passed yet. Deliveries are not touched: each carries its event's fields, so it
        outlives the event (``WebhookOutbox.prune_deliveries`` has its own retention).
        """


class WebhookOutbox(Protocol):
    """Webhook endpoints of a tenant and the deliveries owed to them (rule 11)."""

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        """Store a new endpoint; ``ValidationError`` when its ``endpoint_id`` is already stored."""

    async def get_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> WebhookEndpoint:
        """One endpoint of ``tenant`` (None: any); ``EndpointNotFound`` (also for another tenant's)."""

    async def list_endpoints(self, *, tenant: str | None = None) -> list[WebhookEndpoint]:
        """Every endpoint of ``tenant`` (None: all), oldest first (then by id)."""

    async def delete_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> None:
        """Delete an endpoint and every delivery to it; ``EndpointNotFound``."""

    async def rotate_endpoint_secret(
        self, *, endpoint_id: str, secret: str, previous_until: datetime, tenant: str | None = None
    ) -> WebhookEndpoint:
        """Make ``secret`` the endpoint's secret; the old one becomes ``previous_secret`` until
        ``previous_until``. Return the endpoint as stored; ``EndpointNotFound``."""

    async def dispatch_events(self, *, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """Fan the next settled events out to deliveries (rule 11); return how many events were passed.

        Only while ``owner`` holds ``WEBHOOK_ROLE`` (checked in the same write; else 0). A new
        delivery is pending, due now, with no attempts. The cursor starts before the oldest kept event.
        """

    async def claim_deliveries(self, *, worker_id: str, limit: int, lease_s: float) -> list[DeliveryJob]:
        """Lease up to ``limit`` pending deliveries due now (``next_attempt_at <= now``, no live lease) to
        ``worker_id`` for ``lease_s``, the earliest due first; each with its endpoint."""

    async def record_deliveries(self, *, results: Sequence[DeliveryResult]) -> list[bool]:
        """Apply each result of a claimed delivery; False where the worker no longer holds its lease.

        Every outcome adds one attempt and sets ``last_attempt_at`` (the store's now),
        ``last_status_code`` and ``last_error`` and clears the lease. DELIVERED sets
        ``delivered_at``; RETRY keeps it pending until ``retry_at``; FAILED ends it.
        """

    async def list_deliveries(
        self,
        *,
        endpoint_id: str,
        tenant: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """The endpoint's deliveries, newest event first, at most ``limit`` (capped at ``MAX_PAGE_SIZE``).

        ``EndpointNotFound`` for an unknown endpoint (or another tenant's).
        """

    async def retry_delivery(self, *, endpoint_id: str, event_id: str, tenant: str | None = None) -> Delivery:
        """Make a delivery pending and due now again (its attempts kept); return it.

        ``EndpointNotFound`` / ``DeliveryNotFound``.
        """

    async def prune_deliveries(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        """Delete up to ``limit`` ended deliveries (delivered or failed) that ended before ``before``; return how many.

        A delivery ends at its last attempt (``last_attempt_at``; a delivered one's ``delivered_at`` is
        that same time), oldest first. Never a pending one. Only while ``owner`` holds
        ``RETENTION_ROLE`` (else 0). ``limit`` is capped at ``MAX_PAGE_SIZE``.
        """
