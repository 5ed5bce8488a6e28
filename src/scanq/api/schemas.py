"""Every HTTP request and response body, as msgspec Structs.

The handlers decode with these types (decoding and validation in one step),
encode with them, and ``openapi.py`` builds the OpenAPI document from them: one
source of truth. The bounds come from ``scanq.scans``, which checks the same
rules for callers that do not come through HTTP. The error body lives in
``errors.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from scanq.models import (
    Delivery,
    DeliveryStatus,
    EventType,
    ScanEvent,
    ScanStatus,
    TenantQueue,
    WebhookEndpoint,
)
from scanq.scans import (
    MAX_ATTEMPTS_LIMIT,
    MAX_PRIORITY,
    MAX_SCANNER_NAME_LENGTH,
    MAX_TARGET_LENGTH,
    MIN_PRIORITY,
    QueueStats,
    Throughput,
)
from scanq.views import ScanId, ScanOut, UtcTime
from scanq.webhook_service import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH, EndpointRequest, public_endpoint_id

Target = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TARGET_LENGTH,
        description="What to scan: host, domain, URL or IP (optional for the mock scanner)",
    ),
]
ScannerName = Annotated[
    str, Meta(min_length=1, max_length=MAX_SCANNER_NAME_LENGTH, description="Scanner plugin name (default: mock)")
]
Priority = Annotated[int, Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY, description="Higher runs first")]
MaxAttempts = Annotated[
    int, Meta(ge=1, le=MAX_ATTEMPTS_LIMIT, description="Attempts allowed (default: the server's max_attempts)")
]
_CALLBACK = "Where this scan's end is POSTed, signed with the secret of GET /webhooks/callbacks; rules of a webhook URL"
CallbackUrl = Annotated[str, Meta(min_length=1, max_length=MAX_URL_LENGTH, description=_CALLBACK)]


# --- requests ---------------------------------------------------------------------


class ScanRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A scan to queue; every field is optional (``{}`` or no body queues the default scan)."""

    target: Target | None = None
    scanner: ScannerName | None = None
    options: dict[str, Any] = {}
    priority: Priority = 0
    max_attempts: MaxAttempts | None = None
    callback_url: CallbackUrl | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Several scans to queue at once: all are stored, or none."""

    scans: list[ScanRequest]


EndpointUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=(
            "Where events are POSTed: https, resolving to public addresses only (the SSRF guard; the operator's "
            "allow-list may open ranges and plain http for them). Checked now and at every delivery"
        ),
    ),
]
EventTypes = Annotated[
    list[EventType],
    Meta(min_length=1, description="The events to receive (default: scan.completed, scan.failed, scan.cancelled)"),
]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION_LENGTH, description="What the endpoint is for")]


class WebhookRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A webhook endpoint to register for the caller's tenant."""

    url: EndpointUrl
    event_types: EventTypes | None = None
    description: Description | None = None

    def to_request(self) -> EndpointRequest:
        return EndpointRequest(url=self.url, event_types=self.event_types, description=self.description)


# --- responses --------------------------------------------------------------------


class BatchResponse(msgspec.Struct, kw_only=True):
    """The scans a batch stored, in request order."""

    scans: list[ScanOut]


class ScanPage(msgspec.Struct, kw_only=True):
    """A page of scans, newest first; pass ``next_cursor`` as ``?cursor=`` for the next (null on the last page)."""

    scans: list[ScanOut]
    next_cursor: str | None


class StatusCounts(
    msgspec.Struct,
    kw_only=True,
    rename={
        "accepted": ScanStatus.ACCEPTED.value,
        "running": ScanStatus.RUNNING.value,
        "complete": ScanStatus.COMPLETE.value,
        "error": ScanStatus.ERROR.value,
        "cancelled": ScanStatus.CANCELLED.value,
    },
):
    """How many scans are in each status."""

    accepted: int
    running: int
    complete: int
    error: int
    cancelled: int


class TenantQueueOut(msgspec.Struct, kw_only=True):
    """One tenant's live queue: waiting (Accepted) and running scans, and its oldest waiting scan's age."""

    tenant: str
    accepted: int
    running: int
    oldest_accepted_age_s: float | None


class StatsResponse(msgspec.Struct, kw_only=True):
    """Counts by status, their total, how long the oldest Accepted scan has waited (null: none waiting), per tenant.

    ``tenants``: the tenants with waiting or running scans, busiest first: every tenant (up to 100) for an
    admin token or without authentication, else only the caller's own.
    """

    counts: StatusCounts
    total: int
    oldest_accepted_age_s: float | None
    tenants: list[TenantQueueOut]


class FinishedCounts(
    msgspec.Struct,
    kw_only=True,
    rename={
        "complete": ScanStatus.COMPLETE.value,
        "error": ScanStatus.ERROR.value,
        "cancelled": ScanStatus.CANCELLED.value,
    },
):
    """How many scans finished in each terminal status."""

    complete: int
    error: int
    cancelled: int


class ThroughputBucket(msgspec.Struct, kw_only=True):
    """One step: the scans whose ``finished_at`` lies in ``[start, start + step_s)``."""

    start: UtcTime
    counts: FinishedCounts
    total: int


class ThroughputResponse(msgspec.Struct, kw_only=True):
    """Scans finished per terminal status per step over ``[since, until)``, oldest first, every step present.

    Edges are whole multiples of ``step_s`` since the epoch; the last step holds now and is still filling.
    Scans already removed by retention are not counted.
    """

    since: UtcTime
    until: UtcTime
    step_s: float
    buckets: list[ThroughputBucket]


class NotFoundResponse(msgspec.Struct, kw_only=True):
    """The original system's answer for an unknown or malformed scan id."""

    scan_id: str
    status: Literal["Not Found"] = "Not Found"


class EventOut(msgspec.Struct, kw_only=True):
    """One transition of one scan: the ``data`` of a server-sent event, and the event of a webhook delivery.

    ``event_id`` is opaque: send it back as ``Last-Event-ID`` to resume after it.
    """

    event_id: str
    type: EventType
    scan_id: ScanId
    tenant: str
    status: ScanStatus
    attempt: int
    at: UtcTime


class WebhookOut(msgspec.Struct, kw_only=True):
    """A webhook endpoint (its secret is shown only when it is made and when it is rotated).

    ``previous_secret_until``: after a rotation, deliveries are signed with the old secret too until then.
    The tenant's callback endpoint has the id ``callbacks`` and no ``url``: it signs the deliveries to each
    scan's own ``callback_url`` (its secret is also shown by ``GET /webhooks/callbacks``).
    """

    endpoint_id: str
    tenant: str
    url: str | None
    event_types: list[EventType]
    description: str | None
    created_at: UtcTime
    updated_at: UtcTime
    previous_secret_until: UtcTime | None


class WebhookSecretOut(WebhookOut, kw_only=True):
    """A webhook endpoint with its signing secret (``whsec_…``, Standard Webhooks): keep it, it is not shown again."""

    secret: str


class WebhookList(msgspec.Struct, kw_only=True):
    """The webhook endpoints, oldest first."""

    webhooks: list[WebhookOut]


class DeliveryOut(msgspec.Struct, kw_only=True):
    """One event owed to one endpoint: where it is, and how its last attempt went.

    ``status``: pending (waiting for its next attempt, at ``next_attempt_at``), delivered (the endpoint
    answered 2xx) or failed (out of attempts; ``POST .../retry`` sends it again). ``url``: where a callback
    goes (the scan's ``callback_url``); null for a delivery to its endpoint's own URL.
    """

    endpoint_id: str
    url: str | None
    event_id: str
    event: EventOut
    status: DeliveryStatus
    attempts: int
    created_at: UtcTime
    next_attempt_at: UtcTime
    last_attempt_at: UtcTime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: UtcTime | None


class DeliveryList(msgspec.Struct, kw_only=True):
    """An endpoint's deliveries, newest event first."""

    deliveries: list[DeliveryOut]


class HealthResponse(msgspec.Struct, kw_only=True):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(msgspec.Struct, kw_only=True):
    """The process is up and its store answers."""

    status: Literal["ready"] = "ready"


# --- conversions from the domain models -------------------------------------------


def stats_out(stats: QueueStats) -> StatsResponse:
    """The JSON form of the queue counts."""
    counts = stats.counts
    now = datetime.now(UTC)
    return StatsResponse(
        counts=StatusCounts(
            accepted=counts[ScanStatus.ACCEPTED],
            running=counts[ScanStatus.RUNNING],
            complete=counts[ScanStatus.COMPLETE],
            error=counts[ScanStatus.ERROR],
            cancelled=counts[ScanStatus.CANCELLED],
        ),
        total=sum(counts.values()),
        oldest_accepted_age_s=stats.oldest_accepted_age_s,
        tenants=[_tenant_queue_out(queue, now) for queue in stats.tenants],
    )


def event_out(event: ScanEvent) -> EventOut:
    """The JSON form of one scan event."""
    return EventOut(
        event_id=event.event_id,
        type=event.type,
        scan_id=event.scan_id,
        tenant=event.tenant,
        status=event.status,
        attempt=event.attempt,
        at=event.at,
    )


def webhook_out(endpoint: WebhookEndpoint) -> WebhookOut:
    """The JSON form of an endpoint, without its secret."""
    return WebhookOut(**_webhook_fields(endpoint))


def webhook_secret_out(endpoint: WebhookEndpoint) -> WebhookSecretOut:
    """The JSON form of an endpoint with its secret (on create and rotate only)."""
    return WebhookSecretOut(**_webhook_fields(endpoint), secret=endpoint.secret)


def _webhook_fields(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "endpoint_id": public_endpoint_id(endpoint.endpoint_id, tenant=endpoint.tenant),
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "event_types": sorted(endpoint.event_types),
        "description": endpoint.description,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "previous_secret_until": endpoint.previous_secret_until,
    }


def delivery_out(delivery: Delivery) -> DeliveryOut:
    """The JSON form of one delivery."""
    return DeliveryOut(
        endpoint_id=public_endpoint_id(delivery.endpoint_id, tenant=delivery.event.tenant),
        url=delivery.url,
        event_id=delivery.event.event_id,
        event=event_out(delivery.event),
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
    )


def _tenant_queue_out(queue: TenantQueue, now: datetime) -> TenantQueueOut:
    oldest = queue.oldest_accepted_at
    age = None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3)
    return TenantQueueOut(
        tenant=queue.tenant, accepted=queue.accepted, running=queue.running, oldest_accepted_age_s=age
    )


def throughput_out(throughput: Throughput) -> ThroughputResponse:
    """The JSON form of the finished-scans history."""
    buckets = [
        ThroughputBucket(
            start=start,
            counts=FinishedCounts(
                complete=counts[ScanStatus.COMPLETE],
                error=counts[ScanStatus.ERROR],
                cancelled=counts[ScanStatus.CANCELLED],
            ),
            total=sum(counts.values()),
        )
        for start, counts in throughput.buckets
    ]
    return ThroughputResponse(since=throughput.since, until=throughput.until, step_s=throughput.step_s, buckets=buckets)
