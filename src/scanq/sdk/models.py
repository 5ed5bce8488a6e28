"""The records the client returns and sends, as msgspec Structs mirroring the HTTP API's JSON.

These are the client's own types, not the server's (``scanq.api.schemas``): the
client imports nothing of the services. They decode leniently (an unknown field
is ignored, and fields added to the API after the first release have defaults),
so an older client keeps working against a newer server. ``status`` and
``outcome`` are plain strings for the same reason: a status added later decodes
too; ``Scan.is_terminal`` says whether a scan has finished.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

ACCEPTED = "Accepted"
RUNNING = "Running"
COMPLETE = "Complete"
ERROR = "Error"
CANCELLED = "Cancelled"
TERMINAL_STATUSES = frozenset({COMPLETE, ERROR, CANCELLED})
"""The statuses a scan never leaves."""


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The API token that did something: its public id and name (never the secret)."""

    token_id: str
    token_name: str | None = None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt in a scan's history; ``outcome`` is None while it runs."""

    attempt: int
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class Scan(msgspec.Struct, frozen=True, kw_only=True):
    """A scan as the status service returns it (``GET /scans/{id}``), with its attempt history.

    ``result`` holds what the scanner reported once the scan is Complete (the
    network scanners put their findings under ``result["findings"]``); ``error``
    says why it is Error.
    """

    scan_id: str
    status: str
    target: str | None = None
    scanner: str
    options: dict[str, Any] = {}
    priority: int = 0
    attempt: int = 0
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    available_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    history: list[Attempt] = []
    tenant: str = "default"
    submitted_by: Actor | None = None
    cancelled_by: Actor | None = None
    callback_url: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the scan is Complete, Error or Cancelled."""
        return self.status in TERMINAL_STATUSES


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of scans, newest first; ``next_cursor`` continues it (None on the last page)."""

    scans: list[Scan]
    next_cursor: str | None = None


class TenantQueue(msgspec.Struct, frozen=True, kw_only=True):
    """One tenant's live queue: waiting and running scans, and how long its oldest waiting scan has waited."""

    tenant: str
    accepted: int
    running: int
    oldest_accepted_age_s: float | None = None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts by status (``counts["Complete"]``…), their total, the oldest waiting scan's age, the busiest tenants."""

    counts: dict[str, int]
    total: int
    oldest_accepted_age_s: float | None = None
    tenants: list[TenantQueue] = []


class SubmitRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One scan to queue; a field left None takes the service's default.

    ``submit_batch`` takes these or plain mappings with the same keys (an unknown
    key is refused before anything is sent, so a misspelt field is never dropped).
    ``callback_url``: where the scan's end is POSTed, signed with the secret of
    ``client.webhooks.get("callbacks")``.
    """

    target: str | None = None
    scanner: str | None = None
    options: dict[str, Any] | None = None
    priority: int | None = None
    max_attempts: int | None = None
    callback_url: str | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``POST /scans/batch``."""

    scans: list[SubmitRequest]


class BatchAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Its answer: the stored scans, in request order."""

    scans: list[Scan]


class ScanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One transition of one scan, as the status service streams it (``GET /scans/{id}/events``, ``GET /events``).

    ``type`` is ``scan.accepted``, ``scan.started``, ``scan.completed``, ``scan.failed`` or ``scan.cancelled``;
    ``status`` the status the scan moved to. ``event_id`` is opaque: a stream resumes after it.
    """

    event_id: str
    type: str
    scan_id: str
    tenant: str = "default"
    status: str
    attempt: int = 0
    at: datetime

    @property
    def is_terminal(self) -> bool:
        """True for the scan's end: Complete, Error or Cancelled."""
        return self.status in TERMINAL_STATUSES


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook endpoint: where the tenant's scan events are POSTed, signed per Standard Webhooks.

    ``secret`` (``whsec_…``) is set only in the answers of ``create`` and ``rotate_secret``: keep it, the
    service never shows it again. After a rotation the old secret keeps signing until ``previous_secret_until``.
    The tenant's callback endpoint (``endpoint_id`` ``callbacks``) has no ``url``: it signs the deliveries to
    each scan's ``callback_url``, and ``get("callbacks")`` answers it with its secret.
    """

    endpoint_id: str
    tenant: str = "default"
    url: str | None = None
    event_types: list[str] = []
    description: str | None = None
    created_at: datetime
    updated_at: datetime
    previous_secret_until: datetime | None = None
    secret: str | None = None


class WebhookList(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``GET /webhooks``."""

    webhooks: list[Webhook]


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The body of ``POST /webhooks``."""

    url: str
    event_types: list[str] | None = None
    description: str | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event owed to one endpoint: ``status`` pending, delivered or failed, and how its last attempt went."""

    endpoint_id: str
    url: str | None = None  # a callback's: the scan's callback_url
    event_id: str
    event: ScanEvent
    status: str
    attempts: int = 0
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class DeliveryList(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``GET /webhooks/{id}/deliveries``."""

    deliveries: list[Delivery]


__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "COMPLETE",
    "ERROR",
    "RUNNING",
    "TERMINAL_STATUSES",
    "Actor",
    "Attempt",
    "Delivery",
    "Page",
    "Scan",
    "ScanEvent",
    "Stats",
    "SubmitRequest",
    "TenantQueue",
    "Webhook",
]
