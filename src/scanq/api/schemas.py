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

from scanq.models import ScanStatus, TenantQueue
from scanq.scans import (
    MAX_ATTEMPTS_LIMIT,
    MAX_PRIORITY,
    MAX_SCANNER_NAME_LENGTH,
    MAX_TARGET_LENGTH,
    MIN_PRIORITY,
    QueueStats,
    Throughput,
)
from scanq.views import ScanOut, UtcTime

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
