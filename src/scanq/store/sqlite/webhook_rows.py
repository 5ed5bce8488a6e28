"""Rows <-> models for the SQLite store's webhook tables (``webhooks.py``).

An endpoint's ``event_types`` is a sorted JSON list of ``EventType`` values; a delivery
row carries a copy of its event (``seq``, ``scan_id``, ``tenant``, ``event_status``,
``event_attempt``, ``event_at``), so pruning the log never breaks one, and a callback delivery
its scan's ``callback_url`` (``url``; NULL for the others, like a callback endpoint's own ``url``).
Times are REAL epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from scanq.models import (
    Delivery,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store.sqlite.rows import to_datetime, to_optional_datetime

ENDPOINT_COLUMNS = (
    "endpoint_id, tenant, url, event_types, description, secret, previous_secret, previous_secret_until,"
    " created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "endpoint_id, seq, scan_id, tenant, event_status, event_attempt, event_at, status, attempts, created_at,"
    " next_attempt_at, last_attempt_at, last_status_code, last_error, delivered_at, url"
)
NEXT_ATTEMPT_AT = 10  # index of next_attempt_at in DELIVERY_COLUMNS


def endpoint_row(endpoint: WebhookEndpoint) -> tuple[Any, ...]:
    """An endpoint's values in ``ENDPOINT_COLUMNS`` order."""
    event_types = msgspec.json.encode(sorted(str(event_type) for event_type in endpoint.event_types)).decode()
    until = endpoint.previous_secret_until
    return (endpoint.endpoint_id, endpoint.tenant, endpoint.url, event_types, endpoint.description, endpoint.secret,
            endpoint.previous_secret, None if until is None else until.timestamp(), endpoint.created_at.timestamp(),
            endpoint.updated_at.timestamp())  # fmt: skip


def endpoint_from_row(row: tuple[Any, ...]) -> WebhookEndpoint:
    """A ``WebhookEndpoint`` from a row in ``ENDPOINT_COLUMNS`` order."""
    return WebhookEndpoint(
        endpoint_id=row[0],
        tenant=row[1],
        url=row[2],
        event_types=frozenset(EventType(value) for value in msgspec.json.decode(row[3])),
        description=row[4],
        secret=row[5],
        previous_secret=row[6],
        previous_secret_until=to_optional_datetime(row[7]),
        created_at=to_datetime(row[8]),
        updated_at=to_datetime(row[9]),
    )


def delivery_from_row(row: tuple[Any, ...]) -> Delivery:
    """A ``Delivery`` from a row in ``DELIVERY_COLUMNS`` order."""
    event = ScanEvent(
        event_id=str(row[1]),
        scan_id=row[2],
        tenant=row[3],
        status=ScanStatus(row[4]),
        attempt=row[5],
        at=to_datetime(row[6]),
    )
    return Delivery(
        endpoint_id=row[0],
        event=event,
        status=DeliveryStatus(row[7]),
        attempts=row[8],
        created_at=to_datetime(row[9]),
        next_attempt_at=to_datetime(row[10]),
        last_attempt_at=to_optional_datetime(row[11]),
        last_status_code=row[12],
        last_error=row[13],
        delivered_at=to_optional_datetime(row[14]),
        url=row[15],
    )


def results_json(results: Sequence[tuple[DeliveryResult, int]]) -> str:
    """The ``:results`` parameter of RECORD: ``[[endpoint_id, seq, worker, outcome, code, error, retry_at]]``."""
    items = [
        (result.endpoint_id, seq, result.worker_id, str(result.outcome), result.status_code, result.error,
         None if result.retry_at is None else result.retry_at.timestamp())
        for result, seq in results
    ]  # fmt: skip
    return msgspec.json.encode(items).decode()


__all__ = [
    "DELIVERY_COLUMNS",
    "ENDPOINT_COLUMNS",
    "NEXT_ATTEMPT_AT",
    "delivery_from_row",
    "endpoint_from_row",
    "endpoint_row",
    "results_json",
]
