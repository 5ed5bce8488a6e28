"""Records to models and models to statement arguments (the ``unnest`` arrays of the batch statements)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from scanq.ids import is_scan_id
from scanq.models import (
    Actor,
    ApiToken,
    Attempt,
    Delivery,
    DeliveryJob,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    Finish,
    Lease,
    NewScan,
    Outcome,
    Scan,
    ScanEvent,
    ScanStatus,
    Scope,
    TenantLimits,
    TenantQueue,
    WebhookEndpoint,
)
from scanq.record_makers import STATUS_BY_NAME, make_attempt, make_scan

# An event's id is its place in the log, "<txid>.<seq>" (both decimal, no sign, no leading zeros).
_EVENT_ID = re.compile(r"(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,18})")
_MAX_TXID = 2**64 - 1  # xid8
_MAX_SEQ = 2**63 - 1  # bigint
# The columns of statements.CLAIMED_COLUMNS, which every claim statement answers first, history last.
CLAIMED_WIDTH = 29
_OUTCOME_BY_NAME: dict[str, Outcome] = {outcome.value: outcome for outcome in Outcome}


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def actor_from_columns(token_id: str | None, token_name: str | None) -> Actor | None:
    """``submitted_by`` / ``cancelled_by``: the token's id and name columns (no id: no actor)."""
    return Actor(token_id=token_id, token_name=token_name) if token_id is not None else None


def attempt_from_entry(entry: dict[str, Any]) -> Attempt:
    """One entry of the ``history`` jsonb array (timestamps are ISO text there)."""
    outcome = entry.get("outcome")
    return make_attempt(
        entry["attempt"],
        entry["worker"],
        datetime.fromisoformat(entry["started_at"]),
        _timestamp(entry.get("finished_at")),
        _OUTCOME_BY_NAME[outcome] if outcome is not None else None,
        entry.get("error"),
    )


def scan_from_row(row: asyncpg.Record) -> Scan:
    """A whole ``scans`` row (``SELECT *``, ``RETURNING s.*``).

    Its history is the ``history`` array, then the attempt the row's columns imply when
    ``attempt_worker`` is set (migration 9): open while Running, else ended by the scan's status.
    """
    history = tuple(attempt_from_entry(entry) for entry in row["history"])
    if (worker := row["attempt_worker"]) is not None:
        attempt, started, status = row["attempt"], row["started_at"], row["status"]
        if status == "Running":
            implied = make_attempt(attempt, worker, started, None, None, None)
        else:
            implied = make_attempt(attempt, worker, started, row["finished_at"], _OUTCOME_BY_NAME[status], row["error"])
        history = (*history, implied)
    return _scan(row, history=history)


def claimed_scan_from_row(row: asyncpg.Record) -> Scan:
    """A scan a claim made Running: the row starts with ``statements.CLAIMED_COLUMNS``, read by position.

    Its history is NULL when it holds no earlier attempt; the attempt this claim opened is added from
    the row (attempt, ``attempt_worker``, ``started_at``), as ``scan_from_row`` adds it.
    """
    (scan_id, status, target, scanner, options, priority, attempt, max_attempts, created_at, updated_at,
     available_at, started_at, finished_at, lease_owner, lease_expires_at, error, result, idempotency_key,
     cancel_requested, tenant, submitted_by, submitted_by_name, cancelled_by, cancelled_by_name, _, target_key,
     callback_url, worker, stored) = row[:CLAIMED_WIDTH]  # fmt: skip
    opened = make_attempt(attempt, worker, started_at, None, None, None)
    if stored is None:
        history: tuple[Attempt, ...] = (opened,)
    else:
        history = (*(attempt_from_entry(entry) for entry in stored), opened)
    return make_scan(
        str(scan_id), STATUS_BY_NAME[status], target, scanner, options, priority, attempt, max_attempts, created_at,
        updated_at, available_at, started_at, finished_at, lease_owner, lease_expires_at, error, result,
        idempotency_key, cancel_requested, history, tenant, actor_from_columns(submitted_by, submitted_by_name),
        actor_from_columns(cancelled_by, cancelled_by_name), target_key, callback_url,
    )  # fmt: skip


def _scan(row: asyncpg.Record, *, history: tuple[Attempt, ...]) -> Scan:
    # make_scan takes the fields in Scan's order (record_makers.positional_maker): a page of 50 is built per read.
    return make_scan(
        str(row["scan_id"]),
        STATUS_BY_NAME[row["status"]],
        row["target"],
        row["scanner"],
        row["options"],
        row["priority"],
        row["attempt"],
        row["max_attempts"],
        row["created_at"],
        row["updated_at"],
        row["available_at"],
        row["started_at"],
        row["finished_at"],
        row["lease_owner"],
        row["lease_expires_at"],
        row["error"],
        row["result"],
        row["idempotency_key"],
        row["cancel_requested"],
        history,
        row["tenant"],
        actor_from_columns(row["submitted_by"], row["submitted_by_name"]),
        actor_from_columns(row["cancelled_by"], row["cancelled_by_name"]),
        row["target_key"],
        row["callback_url"],
    )


def new_scan_arrays(scans: Sequence[NewScan]) -> tuple[list[Any], ...]:
    """The arguments of ``insert_scans``: one array per column."""
    return (
        [scan.scan_id for scan in scans],
        [scan.target for scan in scans],
        [scan.scanner for scan in scans],
        [dict(scan.options) for scan in scans],
        [scan.priority for scan in scans],
        [scan.max_attempts for scan in scans],
        [scan.created_at for scan in scans],
        [scan.available_at for scan in scans],
        [scan.idempotency_key for scan in scans],
        [scan.tenant for scan in scans],
        [scan.submitted_by.token_id if scan.submitted_by is not None else None for scan in scans],
        [scan.submitted_by.token_name if scan.submitted_by is not None else None for scan in scans],
        [scan.target_key for scan in scans],
        [scan.callback_url for scan in scans],
    )


def first_submissions(scans: Sequence[NewScan]) -> list[NewScan]:
    """The scans ``insert_scans`` is sent: each (tenant, idempotency key) once, at its first place in the batch.

    A later scan with the same key is a replay of the first: it takes no fair key (rule 9), and the
    caller answers it with the first one's scan.
    """
    seen: set[tuple[str, str]] = set()
    first: list[NewScan] = []
    for scan in scans:
        if scan.idempotency_key is not None:
            key = (scan.tenant, scan.idempotency_key)
            if key in seen:
                continue
            seen.add(key)
        first.append(scan)
    return first


def claim_order(rows: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
    """Claimed rows (``CLAIMED_COLUMNS``) in claim order: priority (higher first), fair key, scan id (rule 9)."""
    return sorted(rows, key=lambda row: (-row[5], row[24], row[0]))  # priority, fair_key, scan_id by position


def queue_from_row(row: asyncpg.Record) -> TenantQueue:
    """A row of ``tenant_queues``."""
    return TenantQueue(
        tenant=row["tenant"],
        accepted=int(row["accepted"]),
        running=int(row["running"]),
        oldest_accepted_at=row["oldest_accepted_at"],
    )


def held_leases(leases: Sequence[Lease]) -> list[Lease]:
    """Leases worth sending, in scan_id order (one lock order for every batch, so batches cannot deadlock)."""
    unique = {lease.scan_id: lease for lease in reversed(leases) if is_scan_id(lease.scan_id)}
    return [unique[scan_id] for scan_id in sorted(unique)]


def lease_arrays(leases: Sequence[Lease]) -> tuple[list[str], list[str], list[int]]:
    """The fence of a batch statement: scan ids, lease owners, attempts."""
    return (
        [lease.scan_id for lease in leases],
        [lease.worker_id for lease in leases],
        [lease.attempt for lease in leases],
    )


def first_finishes(finishes: Sequence[Finish]) -> dict[str, Finish]:
    """The first finish of each scan, by scan id: a scan completes at most once, so a repeat never counts."""
    first: dict[str, Finish] = {}
    for fin in finishes:
        if is_scan_id(fin.lease.scan_id):
            first.setdefault(fin.lease.scan_id, fin)
    return first


def finish_arrays(ordered: Sequence[Finish]) -> tuple[list[Any], ...]:
    """The arguments of ``finish``: the fence, then outcome, result, error and retry time per scan."""
    return (
        *lease_arrays([fin.lease for fin in ordered]),
        [str(fin.outcome) for fin in ordered],
        [dict(fin.result) if fin.result is not None else None for fin in ordered],
        [fin.error for fin in ordered],
        [fin.retry_at for fin in ordered],
    )


def token_from_row(row: asyncpg.Record) -> ApiToken:
    """An ``api_tokens`` row; its scopes are a sorted text array."""
    return ApiToken(
        token_id=row["token_id"],
        tenant=row["tenant"],
        scopes=frozenset(Scope(scope) for scope in row["scopes"]),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        name=row["name"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def token_arguments(token: ApiToken) -> tuple[Any, ...]:
    """The arguments of ``insert_token``, in its column order."""
    return (
        token.token_id,
        token.tenant,
        token.name,
        sorted(str(scope) for scope in token.scopes),
        token.secret_hash,
        token.created_at,
        token.expires_at,
        token.revoked_at,
        token.last_used_at,
    )


def limits_from_row(row: asyncpg.Record) -> TenantLimits:
    """A ``tenant_limits`` row."""
    return TenantLimits(
        tenant=row["tenant"], max_queued=row["max_queued"], rate_per_s=row["rate_per_s"], weight=row["weight"]
    )


def event_id(txid: int, seq: int) -> str:
    """The id of the event at ``(txid, seq)`` in the log (and its position: ``read_events(after=...)``)."""
    return f"{txid}.{seq}"


def parse_event_id(value: str) -> tuple[int, int] | None:
    """``(txid, seq)`` of an id ``event_id`` made, or None for anything else."""
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        return None
    txid, seq = int(match.group(1)), int(match.group(2))
    if txid > _MAX_TXID or seq > _MAX_SEQ:
        return None
    return txid, seq


def event_from_row(row: asyncpg.Record) -> ScanEvent:
    """A ``scan_events`` row."""
    return ScanEvent(
        event_id=event_id(row["txid"], row["seq"]),
        scan_id=str(row["scan_id"]),
        tenant=row["tenant"],
        status=ScanStatus(row["status"]),
        attempt=row["attempt"],
        at=row["at"],
    )


def endpoint_from_row(row: asyncpg.Record, *, prefix: str = "") -> WebhookEndpoint:
    """A ``webhook_endpoints`` row; ``prefix`` names the renamed columns of a join (``endpoint_``)."""
    return WebhookEndpoint(
        endpoint_id=row["endpoint_id"],
        tenant=row[f"{prefix}tenant"],
        url=row[f"{prefix}url"],
        event_types=frozenset(EventType(value) for value in row["event_types"]),
        secret=row["secret"],
        created_at=row[f"{prefix}created_at"],
        updated_at=row[f"{prefix}updated_at"],
        description=row["description"],
        previous_secret=row["previous_secret"],
        previous_secret_until=row["previous_secret_until"],
    )


def endpoint_arguments(endpoint: WebhookEndpoint) -> tuple[Any, ...]:
    """The arguments of ``insert_endpoint``, in its column order; event types sorted."""
    return (
        endpoint.endpoint_id,
        endpoint.tenant,
        endpoint.url,
        sorted(str(event_type) for event_type in endpoint.event_types),
        endpoint.description,
        endpoint.secret,
        endpoint.previous_secret,
        endpoint.previous_secret_until,
        endpoint.created_at,
        endpoint.updated_at,
    )


def delivery_from_row(row: asyncpg.Record) -> Delivery:
    """A ``webhook_deliveries`` row, with its copy of the event."""
    return Delivery(
        endpoint_id=row["endpoint_id"],
        event=ScanEvent(
            event_id=event_id(row["event_txid"], row["event_seq"]),
            scan_id=str(row["scan_id"]),
            tenant=row["tenant"],
            status=ScanStatus(row["event_status"]),
            attempt=row["event_attempt"],
            at=row["event_at"],
        ),
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        url=row["url"],
    )


def job_from_row(row: asyncpg.Record, *, worker_id: str) -> DeliveryJob:
    """A row of ``claim_deliveries``: the delivery as claimed and its endpoint (columns ``endpoint_*``)."""
    return DeliveryJob(
        delivery=delivery_from_row(row), endpoint=endpoint_from_row(row, prefix="endpoint_"), worker_id=worker_id
    )


ResultKey = tuple[str, tuple[int, int], str]
"""A delivery (endpoint, its event's (txid, seq)) and the worker reporting on it (``delivery_rules``)."""


def result_arrays(ordered: Sequence[tuple[ResultKey, DeliveryResult]]) -> tuple[list[Any], ...]:
    """The arguments of ``record_deliveries``: the key and fence, then what the attempt reported."""
    return (
        [key[0] for key, _ in ordered],
        [key[1][0] for key, _ in ordered],
        [key[1][1] for key, _ in ordered],
        [key[2] for key, _ in ordered],
        [str(result.outcome) for _, result in ordered],
        [result.status_code for _, result in ordered],
        [result.error for _, result in ordered],
        [result.retry_at for _, result in ordered],
    )


__all__ = [
    "ResultKey",
    "actor_from_columns",
    "attempt_from_entry",
    "claim_order",
    "claimed_scan_from_row",
    "delivery_from_row",
    "endpoint_arguments",
    "endpoint_from_row",
    "event_from_row",
    "event_id",
    "finish_arrays",
    "first_finishes",
    "first_submissions",
    "held_leases",
    "job_from_row",
    "lease_arrays",
    "limits_from_row",
    "new_scan_arrays",
    "parse_event_id",
    "queue_from_row",
    "result_arrays",
    "scan_from_row",
    "token_arguments",
    "token_from_row",
]
