"""The body of a webhook: the event's type and time, and the scan as ``GET /scans/{id}`` shows it.

``{"type": "scan.completed", "timestamp": "<RFC 3339, the event's time>", "data": <scan>}``
where the scan is read from the store when the delivery is sent (so a late
delivery shows the scan as it is then, findings included) and rendered by
``scanq.views.scan_out``, as the status API renders it. A scan that is gone
(retention deleted it) is sent as ``{"scan_id", "status", "tenant"}`` from the
event. The body is bounded: over ``MAX_BODY_BYTES`` the scan's ``result`` is
replaced by ``{"truncated": true}``; a scan still over it (outsized options or
error text) has those replaced too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from scanq.exceptions import ScanNotFound
from scanq.models import ScanEvent
from scanq.store import Store
from scanq.views import ScanOut, scan_out

MAX_BODY_BYTES = 256 * 1024
TRUNCATED: dict[str, Any] = {"truncated": True}
MAX_TRUNCATED_ERROR_CHARS = 1000

_encoder = msgspec.json.Encoder()


def encode_body(event: ScanEvent, data: ScanOut | dict[str, Any]) -> bytes:
    """The JSON body for ``event`` carrying ``data``; a scan over ``MAX_BODY_BYTES`` is cut down (see the module)."""
    body = _encoder.encode({"type": event.type.value, "timestamp": event.at, "data": data})
    if len(body) <= MAX_BODY_BYTES or not isinstance(data, ScanOut):
        return body
    data = msgspec.structs.replace(data, result=TRUNCATED)
    body = _encoder.encode({"type": event.type.value, "timestamp": event.at, "data": data})
    if len(body) <= MAX_BODY_BYTES:
        return body
    error = data.error if data.error is None else data.error[:MAX_TRUNCATED_ERROR_CHARS]
    data = msgspec.structs.replace(data, options=TRUNCATED, error=error)
    return _encoder.encode({"type": event.type.value, "timestamp": event.at, "data": data})


def gone_scan(event: ScanEvent) -> dict[str, Any]:
    """What a webhook says of a scan that is no longer stored: the event's own facts."""
    return {"scan_id": event.scan_id, "status": event.status.value, "tenant": event.tenant}


async def build_body(store: Store, event: ScanEvent) -> bytes:
    """Read the event's scan now and render the body (``ScanNotFound`` → the minimal form).

    Store errors propagate: the caller retries the delivery later.
    """
    try:
        scan = await store.get(scan_id=event.scan_id, tenant=event.tenant)
    except ScanNotFound:
        return encode_body(event, gone_scan(event))
    return encode_body(event, scan_out(scan))


class SharedBody:
    """The body of one event's deliveries in a claim: built once, on first use, shared by its endpoints.

    Args:
        store: where the scan is read.
        event: the event the deliveries carry.
        timeout_s: how long reading the scan may take.
    """

    __slots__ = ("_event", "_future", "_store", "_timeout_s")

    def __init__(self, store: Store, event: ScanEvent, *, timeout_s: float) -> None:
        self._store = store
        self._event = event
        self._timeout_s = timeout_s
        self._future: asyncio.Future[bytes] | None = None

    def get(self) -> asyncio.Future[bytes]:
        """The body, being built or built (a failure to read the scan is the future's exception)."""
        if self._future is None:
            self._future = asyncio.ensure_future(self._build())
            self._future.add_done_callback(_retrieve)
        return self._future

    async def _build(self) -> bytes:
        async with asyncio.timeout(self._timeout_s):
            return await build_body(self._store, self._event)


def _retrieve(future: asyncio.Future[bytes]) -> None:
    # Every waiter sees the exception; this only keeps asyncio from reporting it as never retrieved.
    if not future.cancelled():
        future.exception()


__all__ = ["MAX_BODY_BYTES", "SharedBody", "build_body", "encode_body", "gone_scan"]
