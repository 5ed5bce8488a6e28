"""The JSON form of a stored scan: what the status API answers and a webhook carries.

A base module (msgspec only) so the API and the worker's webhook deliveries
render a scan the same way without the worker importing the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from scanq.models import Actor, Attempt, Outcome, Scan, ScanStatus

UtcTime = Annotated[datetime, Meta(tz=True, description="UTC timestamp, RFC 3339")]
ScanId = Annotated[
    str, Meta(description="UUIDv7, canonical lowercase", examples=["0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e"])
]


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


class ScanOut(msgspec.Struct):
    """A scan record with its attempt history, its tenant and who submitted and cancelled it.

    Not keyword-only: ``scan_out`` builds one per scan answered (a list page, every submission) by position,
    half the cost of 24 keyword arguments. ``tests/unit/test_ingest_answer.py`` checks it against one built
    by name.
    """

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
    # Where the scan's end is POSTed (the tenant's callback endpoint signs it); null: no one-off callback.
    callback_url: str | None = None


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
    """The JSON form of a stored scan (every record field), in ``ScanOut``'s field order."""
    result = scan.result
    return ScanOut(
        scan.scan_id,
        scan.status,
        scan.target,
        scan.scanner,
        _as_dict(scan.options),
        scan.priority,
        scan.attempt,
        scan.max_attempts,
        scan.created_at,
        scan.updated_at,
        scan.available_at,
        scan.started_at,
        scan.finished_at,
        scan.lease_owner,
        scan.lease_expires_at,
        scan.error,
        None if result is None else _as_dict(result),
        scan.idempotency_key,
        scan.cancel_requested,
        [attempt_out(a) for a in scan.history],
        scan.tenant,
        _actor_out(scan.submitted_by),
        _actor_out(scan.cancelled_by),
        scan.callback_url,
    )


def _actor_out(actor: Actor | None) -> ActorOut | None:
    return None if actor is None else ActorOut(token_id=actor.token_id, token_name=actor.token_name)


__all__ = ["ActorOut", "AttemptOut", "ScanId", "ScanOut", "UtcTime", "attempt_out", "scan_out"]
