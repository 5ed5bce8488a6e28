"""Rows <-> models for the SQLite store.

Timestamps are REAL epoch seconds; ``options``, ``result`` and ``history`` are
JSON text. Rows come back in the column order of ``statements.COLUMNS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from scanq.exceptions import ValidationError
from scanq.models import (
    Actor,
    ApiToken,
    Attempt,
    Created,
    Finish,
    Lease,
    NewScan,
    Outcome,
    Scan,
    Scope,
    TenantLimits,
)
from scanq.record_makers import STATUS_BY_NAME, make_attempt, make_scan, positional_maker
from scanq.store.base import accepted_scan

_ACTOR = msgspec.json.Decoder(Actor)
make_created = positional_maker(Created)
decode_json = msgspec.json.decode
fromtimestamp = datetime.fromtimestamp


def to_datetime(epoch: float) -> datetime:
    """A stored REAL epoch as an aware UTC datetime (exact to the microsecond)."""
    return datetime.fromtimestamp(epoch, UTC)


def to_optional_datetime(epoch: float | None) -> datetime | None:
    """``to_datetime`` for a nullable column."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def attempt_from_json(entry: dict[str, Any]) -> Attempt:
    """One decoded ``history`` entry as an ``Attempt``."""
    outcome = entry.get("outcome")
    finished_at = entry.get("finished_at")
    return make_attempt(
        entry["attempt"],
        entry["worker"],
        datetime.fromtimestamp(entry["started_at"], UTC),
        None if finished_at is None else datetime.fromtimestamp(finished_at, UTC),
        None if outcome is None else Outcome(outcome),
        entry.get("error"),
    )


def scan_from_row(row: tuple[Any, ...]) -> Scan:
    """A ``Scan`` from a row selected (or returned) in ``COLUMNS`` order (by position: a claim makes one per scan)."""
    (scan_id, status, target, scanner, options, priority, attempt, max_attempts, created_at, updated_at,
     available_at, started_at, finished_at, lease_owner, lease_expires_at, error, result, idempotency_key,
     cancel_requested, history, tenant, submitted_by, cancelled_by, target_key, callback_url) = row[:25]  # fmt: skip
    return make_scan(
        scan_id, STATUS_BY_NAME[status], target, scanner, decode_json(options), priority, attempt, max_attempts,
        fromtimestamp(created_at, UTC), fromtimestamp(updated_at, UTC), fromtimestamp(available_at, UTC),
        None if started_at is None else fromtimestamp(started_at, UTC),
        None if finished_at is None else fromtimestamp(finished_at, UTC), lease_owner,
        None if lease_expires_at is None else fromtimestamp(lease_expires_at, UTC), error,
        None if result is None else decode_json(result), idempotency_key, bool(cancel_requested),
        tuple(attempt_from_json(entry) for entry in decode_json(history)), tenant,
        None if submitted_by is None else _ACTOR.decode(submitted_by),
        None if cancelled_by is None else _ACTOR.decode(cancelled_by), target_key, callback_url,
    )  # fmt: skip


def accepted_created(new: NewScan, updated_at: datetime) -> Created:
    """``Created(scan=accepted_scan(new, updated_at=updated_at), is_new=True)``, made by position (every create)."""
    return make_created(accepted_scan(new, updated_at=updated_at), True)


def actor_json(actor: Actor | None) -> str | None:
    """An ``Actor`` as the JSON object stored in ``submitted_by`` / ``cancelled_by`` (None stays NULL)."""
    return None if actor is None else msgspec.json.encode(actor).decode()


def to_json(value: Any, *, what: str) -> str:
    """JSON text for a column; ``ValidationError`` naming ``what`` if the value is not JSON."""
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValidationError(f"{what} must be JSON: {exc}") from exc


def insert_row(new: NewScan, submitted_by: str | None = None) -> list[Any]:
    """INSERT_SCAN's parameters for ``new``, its ``fair_key`` and ``updated_at`` (the last two) None: the writer's.

    Args:
        submitted_by: ``actor_json(new.submitted_by)`` when the caller has it already.
    """
    created_at = new.created_at.timestamp()
    available_at = created_at if new.available_at is None else new.available_at.timestamp()
    options = to_json(dict(new.options), what="options") if new.options else "{}"
    if submitted_by is None and new.submitted_by is not None:
        submitted_by = actor_json(new.submitted_by)
    return [new.scan_id, new.target, new.scanner, options, new.priority, new.max_attempts, created_at, available_at,
            new.idempotency_key, new.tenant, submitted_by, new.target_key, new.callback_url, None, None]  # fmt: skip


def insert_params(scans: Sequence[NewScan]) -> list[Any]:
    """``insert_row`` of each scan, one flat list (``INSERT_COLUMNS`` values a scan) as a multi-row INSERT binds it.

    A batch is one caller's, so its actor is encoded once.
    """
    params: list[Any] = []
    actor: Actor | None = None
    submitted_by: str | None = None
    for new in scans:
        if new.submitted_by is not actor:
            actor = new.submitted_by
            submitted_by = actor_json(actor)
        params += insert_row(new, submitted_by)
    return params


def leases_json(leases: Sequence[Lease]) -> str:
    """The ``:leases`` parameter of the fenced statements: ``[[scan_id, worker, attempt], ...]``."""
    return msgspec.json.encode([(lease.scan_id, lease.worker_id, lease.attempt) for lease in leases]).decode()


def finishes_json(finishes: Sequence[Finish]) -> str:
    """The ``:finishes`` parameter of FINISH: ``[[scan_id, worker, attempt, outcome, result, error, retry_at]]``."""
    items: list[tuple[Any, ...]] = []
    for fin in finishes:
        result = None if fin.result is None else to_json(dict(fin.result), what="result")
        retry_at = None if fin.retry_at is None else fin.retry_at.timestamp()
        lease = fin.lease
        items.append((lease.scan_id, lease.worker_id, lease.attempt, str(fin.outcome), result, fin.error, retry_at))
    return msgspec.json.encode(items).decode()


# -- API tokens and tenant limits (accounts.py) ---------------------------------------------------

TOKEN_COLUMNS = "token_id, tenant, scopes, secret_hash, name, created_at, expires_at, revoked_at, last_used_at"
LIMITS_COLUMNS = "tenant, max_queued, rate_per_s, weight"


def token_row(token: ApiToken) -> tuple[Any, ...]:
    """A token's values in ``TOKEN_COLUMNS`` order; scopes as a sorted JSON list of names."""
    scopes = msgspec.json.encode(sorted(str(scope) for scope in token.scopes)).decode()
    return (token.token_id, token.tenant, scopes, token.secret_hash, token.name, token.created_at.timestamp(),
            _epoch(token.expires_at), _epoch(token.revoked_at), _epoch(token.last_used_at))  # fmt: skip


def token_from_row(row: tuple[Any, ...]) -> ApiToken:
    """An ``ApiToken`` from a row in ``TOKEN_COLUMNS`` order."""
    return ApiToken(
        token_id=row[0],
        tenant=row[1],
        scopes=frozenset(Scope(name) for name in msgspec.json.decode(row[2])),
        secret_hash=row[3],
        name=row[4],
        created_at=to_datetime(row[5]),
        expires_at=to_optional_datetime(row[6]),
        revoked_at=to_optional_datetime(row[7]),
        last_used_at=to_optional_datetime(row[8]),
    )


def limits_row(limits: TenantLimits) -> tuple[Any, ...]:
    """A tenant's limits in ``LIMITS_COLUMNS`` order."""
    return (limits.tenant, limits.max_queued, limits.rate_per_s, limits.weight)


def limits_from_row(row: tuple[Any, ...]) -> TenantLimits:
    """``TenantLimits`` from a row in ``LIMITS_COLUMNS`` order."""
    return TenantLimits(tenant=row[0], max_queued=row[1], rate_per_s=row[2], weight=row[3])


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


__all__ = [
    "LIMITS_COLUMNS",
    "TOKEN_COLUMNS",
    "accepted_created",
    "actor_json",
    "attempt_from_json",
    "finishes_json",
    "insert_params",
    "insert_row",
    "leases_json",
    "limits_from_row",
    "limits_row",
    "make_created",
    "scan_from_row",
    "to_datetime",
    "to_json",
    "to_optional_datetime",
    "token_from_row",
    "token_row",
]
