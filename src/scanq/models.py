"""The domain records every part of scanq shares.

These are plain frozen dataclasses: the store returns them, the worker and the
API read them. Change one with ``dataclasses.replace``. The HTTP layer has its
own msgspec types (``api/schemas.py``) built from these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ScanStatus(enum.StrEnum):
    """Where a scan is in its life; see the state machine in DESIGN.md."""

    ACCEPTED = "Accepted"
    RUNNING = "Running"
    COMPLETE = "Complete"
    ERROR = "Error"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED})


DEFAULT_TENANT = "default"
"""The tenant of every scan submitted while authentication is off."""


class Scope(enum.StrEnum):
    """What an API token may do."""

    SUBMIT = "submit"
    READ = "read"
    CANCEL = "cancel"
    WEBHOOKS = "webhooks"  # register, change and read the tenant's webhook endpoints
    ADMIN = "admin"  # every tenant, and the others' operations on them


@dataclass(frozen=True, kw_only=True, slots=True)
class Actor:
    """Who did something: a token's public id and name, never its secret."""

    token_id: str
    token_name: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Caller:
    """Who makes a request: a tenant, what it may do, and the token it showed (None: authentication is off).

    An ``admin`` caller sees and acts on every tenant; any other caller only on its own.
    """

    tenant: str
    scopes: frozenset[Scope]
    actor: Actor | None = None

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def may(self, scope: Scope) -> bool:
        """True when the caller holds ``scope`` (``admin`` holds every scope)."""
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def tenant_filter(self, asked: str | None = None) -> str | None:
        """The tenant a read is limited to: the caller's own, or for an admin ``asked`` (None: every tenant)."""
        return asked if self.is_admin else self.tenant


OPERATOR = Caller(tenant=DEFAULT_TENANT, scopes=frozenset(Scope))
"""The caller while authentication is off, and the CLI's: every scope on every tenant, submitting to ``default``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiToken:
    """A stored API token. The secret itself is never stored, only its SHA-256 (it is 256 random bits)."""

    token_id: str
    tenant: str
    scopes: frozenset[Scope]
    secret_hash: str
    created_at: datetime
    name: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantLimits:
    """A tenant's quotas (None: unlimited) and its share of the workers."""

    tenant: str
    max_queued: int | None = None  # Accepted + Running at once
    rate_per_s: float | None = None  # submissions per second, per ingest process
    weight: float = 1.0


class Outcome(enum.StrEnum):
    """How one attempt ended (``Attempt.outcome``)."""

    COMPLETE = "Complete"
    ERROR = "Error"
    RETRY = "Retry"
    LEASE_EXPIRED = "LeaseExpired"
    RELEASED = "Released"
    CANCELLED = "Cancelled"


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One entry of a scan's history: a claim and how it ended (``outcome`` is None while it runs)."""

    attempt: int
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: Outcome | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class NewScan:
    """A validated submission, ready to be stored as ``Accepted``.

    ``available_at`` None means claimable at once.
    """

    scan_id: str
    created_at: datetime
    target: str | None = None
    scanner: str = "mock"
    options: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    available_at: datetime | None = None
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    submitted_by: Actor | None = None
    # The host the politeness cap counts (``claim(max_per_target=…)``); None: never capped (mock, noop).
    target_key: str | None = None
    # Where the tenant's callback endpoint POSTs this scan's events (``events_contract.callback_endpoint_id``).
    callback_url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Scan:
    """A stored scan, as every backend returns it."""

    scan_id: str
    status: ScanStatus
    target: str | None
    scanner: str
    options: Mapping[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    available_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    error: str | None = None
    result: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    history: tuple[Attempt, ...] = ()
    tenant: str = DEFAULT_TENANT
    submitted_by: Actor | None = None
    cancelled_by: Actor | None = None
    target_key: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Created:
    """What ``Store.create`` answers: the stored scan, and False when an idempotency key matched an older one."""

    scan: Scan
    is_new: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """Which attempt of which scan a worker holds; every fenced call names one."""

    scan_id: str
    worker_id: str
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    """How a worker ends an attempt it holds.

    ``outcome`` is one of COMPLETE (needs ``result``), ERROR (needs ``error``),
    RETRY (back to Accepted at ``retry_at``; the worker only sends it while
    attempts are left) or CANCELLED.
    """

    lease: Lease
    outcome: Outcome
    result: Mapping[str, Any] | None = None
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HeartbeatResult:
    """Answer to a heartbeat: leases the worker no longer holds, and scans asked to stop."""

    lost: frozenset[str] = frozenset()
    cancel_requested: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """A page of scans, newest first; ``next_cursor`` is None on the last page."""

    scans: list[Scan]
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantQueue:
    """One tenant's share of the live queue: waiting and running scans, and its oldest waiting scan."""

    tenant: str
    accepted: int
    running: int
    oldest_accepted_at: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats:
    """Counts by status (every status present, zero when none) and the oldest Accepted scan's creation time."""

    counts: Mapping[ScanStatus, int]
    oldest_accepted_at: datetime | None


class EventType(enum.StrEnum):
    """What a scan event says happened: one per status a transition leads to."""

    ACCEPTED = "scan.accepted"  # submitted, or back in the queue (a retry, a lost lease, a release)
    STARTED = "scan.started"
    COMPLETED = "scan.completed"
    FAILED = "scan.failed"  # Error
    CANCELLED = "scan.cancelled"

    @classmethod
    def of(cls, status: ScanStatus) -> EventType:
        """The event a transition to ``status`` records."""
        return _EVENT_OF_STATUS[status]


_EVENT_OF_STATUS = {
    ScanStatus.ACCEPTED: EventType.ACCEPTED,
    ScanStatus.RUNNING: EventType.STARTED,
    ScanStatus.COMPLETE: EventType.COMPLETED,
    ScanStatus.ERROR: EventType.FAILED,
    ScanStatus.CANCELLED: EventType.CANCELLED,
}

DEFAULT_WEBHOOK_EVENTS = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
"""What an endpoint registered without event types receives: the scan's end."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScanEvent:
    """One transition of one scan, as the store recorded it in the transition's own transaction.

    ``event_id`` is the store's opaque, unique and stable name for it, and its position in the
    store's event log: ``Store.read_events(after=event_id)`` continues after it.
    """

    event_id: str
    scan_id: str
    tenant: str
    status: ScanStatus  # the status the transition led to
    attempt: int  # the scan's attempt after it
    at: datetime

    @property
    def type(self) -> EventType:
        return EventType.of(self.status)


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookEndpoint:
    """A tenant's webhook receiver: where its scans' events are POSTed, signed with ``secret``.

    After a rotation the previous secret stays valid (deliveries carry both signatures) until
    ``previous_secret_until``. ``url`` None marks the tenant's callback endpoint: it has no URL of
    its own and signs the deliveries to each scan's own ``callback_url`` (``Delivery.url``).
    """

    endpoint_id: str
    tenant: str
    url: str | None
    event_types: frozenset[EventType]
    secret: str  # whsec_<base64>, the Standard Webhooks form
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    previous_secret: str | None = None
    previous_secret_until: datetime | None = None


class DeliveryStatus(enum.StrEnum):
    """Where one event's delivery to one endpoint is."""

    PENDING = "pending"  # waiting for its next attempt (or being attempted)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # out of attempts; only a manual retry sends it again


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """One event owed to one endpoint, and how its attempts went."""

    endpoint_id: str
    event: ScanEvent
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    # Where it goes when not to its endpoint's url: a callback delivery's scan ``callback_url``, copied at dispatch.
    url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryJob:
    """A delivery a worker claimed, with the endpoint it goes to (its current secrets)."""

    delivery: Delivery
    endpoint: WebhookEndpoint
    worker_id: str


class DeliveryOutcome(enum.StrEnum):
    """How one attempt at a delivery ended."""

    DELIVERED = "delivered"
    RETRY = "retry"  # try again at ``retry_at``
    FAILED = "failed"  # give up


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryResult:
    """What a worker reports for a delivery it claimed (fenced by ``worker_id``, as a scan's finish is)."""

    endpoint_id: str
    event_id: str
    worker_id: str
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    retry_at: datetime | None = None
