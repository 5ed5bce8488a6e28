"""Server-sent events on the status service: ``GET /scans/{scan_id}/events`` and ``GET /events``.

Each stream starts with ``retry: 2000`` (a client reconnects after 2 s), then
one event per transition::

    id: <event_id>
    event: scan.completed
    data: {"event_id": …, "type": …, "scan_id": …, "tenant": …, "status": …, "attempt": …, "at": …}

and a ``: keep-alive`` comment after ``KEEPALIVE_S`` without an event (so
proxies keep the connection and a client sees a dead one). ``Last-Event-ID``
(or ``?last_event_id=``) resumes after an event. What is read, and how the
streams are woken, is ``scanq.event_feed``; this module frames it.

A stream is one long response, so it is bounded where a request is not: the
edge's header and body timeouts end before it starts and never cut it, but a
process serves at most ``max_streams`` at once (half its ``max_connections``
by default, so streams cannot take every connection): one more is a 503 with
``Retry-After``. A stream ends when the client goes away (the ASGI disconnect
message), when the service shuts down (uvicorn asks each connection to finish;
``edge.EdgeProtocol`` passes that on through ``STREAM_STOP_SCOPE_KEY``, and the
app's shutdown closes the feed), and after a scan's terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Sequence
from contextlib import aclosing

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from scanq.api.callers import OPEN, Callers
from scanq.api.errors import ApiError
from scanq.api.http import encoder
from scanq.api.limits import STREAM_STOP_SCOPE_KEY
from scanq.api.openapi import READ_AUTH_ERRORS, SCAN_ID_PARAM, STORE_ERRORS, Operation, Param, Reply, error_reply
from scanq.api.schemas import event_out
from scanq.auth import TENANT_PATTERN, check_tenant
from scanq.event_feed import MAX_EVENT_ID_LENGTH, EventFeed, EventReader
from scanq.exceptions import ScanqError
from scanq.models import ScanEvent, ScanStatus
from scanq.submissions import parse_status

logger = logging.getLogger(__name__)

TAG = "status"
EVENT_STREAM_MEDIA_TYPE = "text/event-stream"
LAST_EVENT_ID_HEADER = "Last-Event-ID"
LAST_EVENT_ID_QUERY = "last_event_id"
KEEPALIVE_S = 15.0
RETRY_MS = 2000
STREAMS_FULL_RETRY_AFTER_S = 5
STREAM_HEADERS = (
    (b"content-type", EVENT_STREAM_MEDIA_TYPE.encode()),
    (b"cache-control", b"no-cache"),
    # nginx buffers a proxied answer unless told not to: a stream would arrive in lumps.
    (b"x-accel-buffering", b"no"),
)
RETRY_FRAME = b"retry: %d\n\n" % RETRY_MS
KEEPALIVE_FRAME = b": keep-alive\n\n"

EVENT_STREAM_FORMAT = (
    "Server-sent events: `retry: 2000` first, then per transition `id: <event_id>`, `event: <type>` "
    "(scan.accepted, scan.started, scan.completed, scan.failed, scan.cancelled) and `data: <EventOut JSON>` "
    '({"event_id", "type", "scan_id", "tenant", "status", "attempt", "at"}); a `: keep-alive` comment every 15 s'
)
LAST_EVENT_ID_PARAMS = (
    Param(
        name=LAST_EVENT_ID_HEADER,
        location="header",
        description="Resume after this event (what EventSource sends on a reconnect)",
        schema={"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_LENGTH},
    ),
    Param(
        name=LAST_EVENT_ID_QUERY,
        location="query",
        description="The same as the Last-Event-ID header, for a client that cannot set headers (the header wins)",
        schema={"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_LENGTH},
    ),
)
STREAM_ERRORS = {
    503: Reply(
        description="The store cannot be reached, or this process serves as many event streams as it may",
        body=STORE_ERRORS[503].body,
        headers={"Retry-After": "Seconds to wait before trying again (when the streams are full)"},
    ),
}


def frame(events: Sequence[ScanEvent]) -> bytes:
    """Events in the text/event-stream format, in one piece."""
    parts: list[bytes] = []
    for event in events:
        parts.append(
            b"id: %s\nevent: %s\ndata: %s\n\n"
            % (
                event.event_id.encode(),
                event.type.value.encode(),
                encoder.encode(event_out(event)),
            )
        )
    return b"".join(parts)


class EventStreams:
    """The server-sent event handlers.

    Args:
        feed: the process's event feed.
        callers: who each request is from (default: authentication off).
        max_streams: streams this process serves at once; more are a 503.
        keepalive_s: the longest a stream stays silent.
    """

    def __init__(
        self, *, feed: EventFeed, callers: Callers = OPEN, max_streams: int, keepalive_s: float = KEEPALIVE_S
    ) -> None:
        self._feed = feed
        self._callers = callers
        self.max_streams = max_streams
        self.keepalive_s = keepalive_s
        self.open_streams = 0

    async def scan_events(self, request: Request) -> Response:
        """``GET /scans/{scan_id}/events``: the scan's events from its first (or after Last-Event-ID), until it ends."""
        caller = await self._callers(request)
        self._check_room()
        reader = await self._feed.open_scan(
            request.path_params["scan_id"], last_event_id=last_event_id(request), caller=caller
        )
        if reader is None:
            # EventSource stops reconnecting on a 204: the scan's end was already sent.
            return Response(status_code=204)
        return EventStreamResponse(reader, streams=self)

    async def all_events(self, request: Request) -> Response:
        """``GET /events``: every transition the caller may see from now (or after Last-Event-ID) on."""
        caller = await self._callers(request)
        query = request.query_params
        statuses = parse_statuses(query.getlist("status"))
        raw_tenant = query.get("tenant")
        tenant = None if raw_tenant is None else check_tenant(raw_tenant)
        self._check_room()
        reader = await self._feed.open_all(
            statuses=statuses, tenant=tenant, last_event_id=last_event_id(request), caller=caller
        )
        return EventStreamResponse(reader, streams=self)

    def _check_room(self) -> None:
        if self.open_streams >= self.max_streams:
            raise ApiError(
                503,
                "too_many_streams",
                f"this process already serves {self.max_streams} event streams; try again later",
                headers={"Retry-After": str(STREAMS_FULL_RETRY_AFTER_S)},
            )

    def operations(self) -> list[Operation]:
        """The two stream routes (GET only: a HEAD would wait as long as the stream)."""
        stream = Reply(description=EVENT_STREAM_FORMAT, schema={"type": "string"}, media_type=EVENT_STREAM_MEDIA_TYPE)
        return [
            Operation(
                method="GET",
                path="/events",
                endpoint=self.all_events,
                operation_id="stream_events",
                summary="Every transition of the scans the caller may read, live (server-sent events)",
                tag=TAG,
                secured=True,
                allow_head=False,
                params=(
                    Param(
                        name="status",
                        location="query",
                        description="Only transitions to these statuses (repeat it for several; default: all)",
                        schema={"type": "array", "items": {"type": "string", "enum": [s.value for s in ScanStatus]}},
                    ),
                    Param(
                        name="tenant",
                        location="query",
                        description="Only this tenant's scans (an admin token's filter; others name only their own)",
                        schema={"type": "string", "pattern": TENANT_PATTERN},
                    ),
                    *LAST_EVENT_ID_PARAMS,
                ),
                replies={
                    200: stream,
                    422: error_reply("An unknown status or tenant name, or a Last-Event-ID scanq did not make"),
                    **READ_AUTH_ERRORS,
                    **STREAM_ERRORS,
                },
            ),
            Operation(
                method="GET",
                path="/scans/{scan_id}/events",
                endpoint=self.scan_events,
                operation_id="stream_scan_events",
                summary="One scan's transitions from its first, live until it ends (server-sent events)",
                tag=TAG,
                secured=True,
                allow_head=False,
                params=(SCAN_ID_PARAM, *LAST_EVENT_ID_PARAMS),
                replies={
                    200: stream,
                    204: Reply(description="Resumed after the scan's last event, and the scan has ended: nothing more"),
                    404: error_reply("No scan with that id"),
                    422: error_reply("A Last-Event-ID scanq did not make"),
                    **READ_AUTH_ERRORS,
                    **STREAM_ERRORS,
                },
            ),
        ]


class EventStreamResponse(Response):
    """A text/event-stream answer fed by an ``EventReader``, until it ends, the client leaves, or shutdown.

    Args:
        reader: what to send.
        streams: counts the open streams (and holds the keep-alive interval).
    """

    media_type = EVENT_STREAM_MEDIA_TYPE

    def __init__(self, reader: EventReader, *, streams: EventStreams) -> None:
        super().__init__(status_code=200, media_type=EVENT_STREAM_MEDIA_TYPE)
        self._reader = reader
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = self._reader
        self._streams.open_streams += 1
        scope[STREAM_STOP_SCOPE_KEY] = reader.stop
        watcher = asyncio.create_task(_stop_on_disconnect(receive, reader))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": list(STREAM_HEADERS)})
            await _body(send, RETRY_FRAME)
            try:
                async with aclosing(reader.batches(keepalive_s=self._streams.keepalive_s)) as batches:
                    async for events in batches:
                        await _body(send, frame(events) if events else KEEPALIVE_FRAME)
            except ScanqError as exc:
                # The client reconnects (after `retry`) with the last id it got: nothing is lost.
                logger.warning("event stream ended early: %s", exc, extra={"action": "event_stream_failed"})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away while we wrote (a server of ASGI spec 2.4 says so this way)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            scope.pop(STREAM_STOP_SCOPE_KEY, None)
            self._streams.open_streams -= 1


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _stop_on_disconnect(receive: Receive, reader: EventReader) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            reader.stop()
            return


def last_event_id(request: Request) -> str | None:
    """Where a stream resumes: the ``Last-Event-ID`` header, else ``?last_event_id=``, else None (an empty one is
    refused by the feed, as the schema says)."""
    header = request.headers.get(LAST_EVENT_ID_HEADER)
    return header if header is not None else request.query_params.get(LAST_EVENT_ID_QUERY)


def parse_statuses(values: Collection[str]) -> frozenset[ScanStatus]:
    """``?status=`` values (repeatable); ``ValidationError`` for one that is no status."""
    return frozenset(parse_status(value) for value in values)


__all__ = ["EVENT_STREAM_MEDIA_TYPE", "EventStreamResponse", "EventStreams", "frame", "last_event_id"]
