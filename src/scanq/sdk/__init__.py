"""The Python client of the scanq HTTP API, for integrators: ``scanq.Client`` (blocking) and ``scanq.AsyncClient``.

::

    import scanq

    with scanq.Client() as client:  # SCANQ_INGEST_URL, SCANQ_STATUS_URL, SCANQ_TOKEN
        scan = client.submit(target="example.com", scanner="tls")
        done = client.wait(scan.scan_id, timeout_s=300)  # follows the scan's event stream

It talks HTTP only (httpx) and imports nothing of the services: its records are
msgspec Structs of its own (``models.py``) that decode leniently, so an older
client keeps working against a newer server. Errors are one tree under
``ScanqClientError`` (``errors.py``); what is retried, when, and why a batch is
not retried after an ambiguous failure is in ``wire.py``.
"""

from __future__ import annotations

from scanq.sdk.asyncclient import AsyncClient
from scanq.sdk.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ScanqApiError,
    ScanqClientError,
    ScanqConnectionError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from scanq.sdk.models import (
    TERMINAL_STATUSES,
    Actor,
    Attempt,
    Delivery,
    Page,
    Scan,
    ScanEvent,
    Stats,
    SubmitRequest,
    TenantQueue,
    Webhook,
)
from scanq.sdk.syncclient import Client
from scanq.sdk.wire import RetryPolicy

__all__ = [
    "TERMINAL_STATUSES",
    "Actor",
    "AsyncClient",
    "Attempt",
    "Client",
    "Conflict",
    "Delivery",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "Page",
    "QuotaExceeded",
    "RetryPolicy",
    "Scan",
    "ScanEvent",
    "ScanqApiError",
    "ScanqClientError",
    "ScanqConnectionError",
    "Stats",
    "SubmitRequest",
    "TenantQueue",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "Webhook",
]
