"""Every HTTP request and response body, as msgspec Structs.

The handlers decode with these types (decoding and validation in one step),
encode with them, and ``openapi.py`` builds the OpenAPI document from them: one
source of truth. The bounds come from ``scanq.scans``, which checks the same
rules for callers that do not come through HTTP. The error body lives in
``errors.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from scanq.models import Actor, Attempt, Outcome, Scan, ScanStatus, TenantQueue
from scanq.scans import (
    MAX_ATTEMPTS_LIMIT,
    MAX_PRIORITY,
    MAX_SCANNER_NAME_LENGTH,
    MAX_TARGET_LENGTH,
    MIN_PRIORITY,
    QueueStats,
    Throughput,
)

UtcTime = Annotated[datetime, Meta(tz=True, description="UTC timestamp, RFC 3339")]
ScanId = Annotated[
    str, Meta(description="UUIDv7, canonical lowercase", examples=["0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e"])
]
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


# --- requests ---------------------------------------------------------------------


class ScanRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A scan to queue; every field is optional (``{}`` or no body queues the default scan)."""

    target: Target | None = None
    scanner: ScannerName | None = None
    options: dict[str, Any] = {}
    priority: Priority = 0
    max_attempts: MaxAttempts | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Several scans to queue at once: all are stored, or none."""

    scans: list[ScanRequest]


# --- responses --------------------------------------------------------------------


class AttemptOut(msgspec.Struct, kw_only=True):
    """One attempt in a scan's history; ``outcome`` is null while it runs."""

    attempt: int
    worker: str
    started_at: UtcTime
    finished_at: UtcTime | None
    outcome: Outcome | None
    error: str | None


class ActorOut(msgspec.Struct, kw_only=True):
    """The API token that did something (its public id and name; never the secret)."""

    token_id: str
    token_name: str | None


class ScanOut(msgspec.Struct, kw_only=True):
    """A scan record with its attempt history, its tenant and who submitted and cancelled it."""

    scan_id: ScanId
    status: ScanStatus
    target: str | None
    scanner: str
    options: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    created_at: UtcTime
    updated_at: UtcTime
    available_at: UtcTime
    started_at: UtcTime | None
    finished_at: UtcTime | None
    lease_owner: str | None
    lease_expires_at: UtcTime | None
    error: str | None
    result: dict[str, Any] | None
    idempotency_key: str | None
    cancel_requested: bool
    history: list[AttemptOut]
    tenant: str
    submitted_by: ActorOut | None
    cancelled_by: ActorOut | None


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


class HealthResponse(msgspec.Struct, kw_only=True):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(msgspec.Struct, kw_only=True):
    """The process is up and its store answers."""

    status: Literal["ready"] = "ready"


# --- conversions from the domain models -------------------------------------------


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    # msgspec encodes dicts natively; other mappings (a store's read-only view) are copied once.
    return value if type(value) is dict else dict(value)


def attempt_out(attempt: Attempt) -> AttemptOut:
    """The JSON form of one history entry."""
    return AttemptOut(
        attempt=attempt.attempt,
        worker=attempt.worker,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        outcome=attempt.outcome,
        error=attempt.error,
    )


def scan_out(scan: Scan) -> ScanOut:
    """The JSON form of a stored scan (every record field)."""
    return ScanOut(
        scan_id=scan.scan_id,
        status=scan.status,
        target=scan.target,
        scanner=scan.scanner,
        options=_as_dict(scan.options),
        priority=scan.priority,
        attempt=scan.attempt,
        max_attempts=scan.max_attempts,
        created_at=scan.created_at,
        updated_at=scan.updated_at,
        available_at=scan.available_at,
        started_at=scan.started_at,
        finished_at=scan.finished_at,
        lease_owner=scan.lease_owner,
        lease_expires_at=scan.lease_expires_at,
        error=scan.error,
        result=None if scan.result is None else _as_dict(scan.result),
        idempotency_key=scan.idempotency_key,
        cancel_requested=scan.cancel_requested,
        history=[attempt_out(a) for a in scan.history],
        tenant=scan.tenant,
        submitted_by=_actor_out(scan.submitted_by),
        cancelled_by=_actor_out(scan.cancelled_by),
    )


def _actor_out(actor: Actor | None) -> ActorOut | None:
    return None if actor is None else ActorOut(token_id=actor.token_id, token_name=actor.token_name)


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
