"""MongoDB: webhook endpoints and deliveries as documents, and back (the collections: ``webhooks.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from scanq.exceptions import StoreError, ValidationError
from scanq.models import (
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    ScanEvent,
    WebhookEndpoint,
)
from scanq.store.mongo import eventlog
from scanq.store.mongo.rows import EPOCH, Document, as_utc, to_bson_time

PENDING = DeliveryStatus.PENDING.value


def endpoint_document(endpoint: WebhookEndpoint) -> Document:
    return {
        "_id": endpoint.endpoint_id,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "event_types": sorted(kind.value for kind in endpoint.event_types),
        "description": endpoint.description,
        "secret": endpoint.secret,
        "previous_secret": endpoint.previous_secret,
        "previous_secret_until": bson_time(endpoint.previous_secret_until),
        "created_at": to_bson_time(endpoint.created_at),
        "updated_at": to_bson_time(endpoint.updated_at),
    }


def endpoint_from_document(doc: Mapping[str, Any]) -> WebhookEndpoint:
    try:
        kinds = frozenset(EventType(kind) for kind in doc.get("event_types") or ())
    except ValueError:
        raise StoreError(f"webhook endpoint {doc.get('_id')} has an unknown event type") from None
    created_at = as_utc(doc.get("created_at")) or EPOCH
    return WebhookEndpoint(
        endpoint_id=str(doc["_id"]),
        tenant=str(doc["tenant"]),
        url=doc.get("url"),  # None: the tenant's callback endpoint
        event_types=kinds,
        secret=str(doc["secret"]),
        created_at=created_at,
        updated_at=as_utc(doc.get("updated_at")) or created_at,
        description=doc.get("description"),
        previous_secret=doc.get("previous_secret"),
        previous_secret_until=as_utc(doc.get("previous_secret_until")),
    )


def delivery_document(endpoint_id: str, seq: int, event: ScanEvent, now: datetime, *, url: str | None) -> Document:
    """A new delivery: pending, due ``now``, no attempt yet; ``url`` a callback delivery's scan's ``callback_url``."""
    return {
        "endpoint_id": endpoint_id,
        "url": url,
        "seq": seq,
        "event": {
            "scan_id": event.scan_id,
            "tenant": event.tenant,
            "status": event.status.value,
            "attempt": event.attempt,
            "at": to_bson_time(event.at),
        },
        "status": PENDING,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "last_attempt_at": None,
        "last_status_code": None,
        "last_error": None,
        "delivered_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
    }


def delivery_from_document(doc: Mapping[str, Any]) -> Delivery:
    event = eventlog.event_from_document({"_id": doc["seq"], **(doc.get("event") or {})})
    created_at = as_utc(doc.get("created_at")) or EPOCH
    return Delivery(
        endpoint_id=str(doc["endpoint_id"]),
        event=event,
        status=DeliveryStatus(doc["status"]),
        attempts=int(doc.get("attempts") or 0),
        created_at=created_at,
        next_attempt_at=as_utc(doc.get("next_attempt_at")) or created_at,
        last_attempt_at=as_utc(doc.get("last_attempt_at")),
        last_status_code=doc.get("last_status_code"),
        last_error=doc.get("last_error"),
        delivered_at=as_utc(doc.get("delivered_at")),
        url=doc.get("url"),
    )


def owed_deliveries(
    events: Sequence[tuple[int, ScanEvent]],
    endpoints: Sequence[WebhookEndpoint],
    callback_urls: Mapping[str, str],
    now: datetime,
) -> list[Document]:
    """The deliveries ``events`` (numbered) owe ``endpoints``; a callback endpoint (no url) is owed only
    the events of a scan with a callback_url (``callback_urls``: scan id → its url), sent there."""
    owed: list[Document] = []
    for seq, event in events:
        for endpoint in endpoints:
            if not is_due_to(endpoint, event):
                continue
            url = None if endpoint.url is not None else callback_urls.get(event.scan_id)
            if endpoint.url is None and url is None:
                continue
            owed.append(delivery_document(endpoint.endpoint_id, seq, event, now, url=url))
    return owed


def is_due_to(endpoint: WebhookEndpoint, event: ScanEvent) -> bool:
    """Whether ``event`` is owed to ``endpoint``: its tenant's, of a type it subscribes to, after it existed."""
    return endpoint.tenant == event.tenant and event.type in endpoint.event_types and endpoint.created_at <= event.at


def record_update(result: DeliveryResult, now: datetime) -> Document:
    """What one report sets: an attempt more, its time and answer, the lease cleared, the outcome's status."""
    changes: Document = {
        "last_attempt_at": now,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if result.outcome is DeliveryOutcome.DELIVERED:
        changes |= {"status": DeliveryStatus.DELIVERED.value, "delivered_at": now}
    elif result.outcome is DeliveryOutcome.FAILED:
        changes["status"] = DeliveryStatus.FAILED.value
    else:
        changes["next_attempt_at"] = now if result.retry_at is None else max(to_bson_time(result.retry_at), now)
    return {"$set": changes, "$inc": {"attempts": 1}}


def bson_time(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_bson_time(moment)


def event_seq(event_id: str) -> int | None:
    try:
        return eventlog.parse_event_id(event_id)
    except ValidationError:
        return None
