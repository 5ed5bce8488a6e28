"""The HTTP edge: the limits a request meets before the app sees it, enforced in uvicorn's connection protocol.

uvicorn's httptools protocol buffers whatever a client sends as headers (the
parser joins a header value's pieces until the line ends), waits for headers
and bodies forever, accepts connections until the open-file limit, and closes
a connection at once after answering a request whose body it never read (so a
client still uploading gets a reset instead of the answer). None of that is
reachable from ASGI: the app only runs once the headers are complete, and
uvicorn's ``limit_concurrency`` answers 503 only after reading them. So
``EdgeProtocol`` subclasses uvicorn's ``HttpToolsProtocol`` and adds:

==========================================  =====================================================
limit                                       answer
==========================================  =====================================================
request target over 16 KiB                  414 ``uri_too_long``
a header line over 16 KiB                   431 ``header_too_large``
more than 100 header lines                  431 ``too_many_headers``
header section over 64 KiB                  431 ``headers_too_large``
headers not complete in header_timeout      408 ``request_timeout`` (nothing sent yet: just closed)
body not complete in body_timeout           408 ``request_timeout``
bytes that are not HTTP                     400 ``bad_request`` (uvicorn: a text/plain 400)
max_connections connections already open    closed at once; a WARNING says so, at most every 10 s
==========================================  =====================================================

Each answer has the one JSON error shape and ``Connection: close``. Then the
connection *lingers* (as nginx's ``lingering_close``): what the client still
sends is read and thrown away, up to ``LINGER_MAX_BYTES`` or ``LINGER_S``,
before the socket closes, so a client that writes its whole request before
reading (Python's ``urllib``) sees the answer instead of a reset. The same
happens when the app answers (a 413, say) before the request body has
arrived: the rest of the body is read through the parser and discarded, then
the connection closes or, if both sides meant to keep it alive, serves the
next request. The numbers and the connection cap are in ``limits.py``.

A server-sent event stream (``api/events.py``) is one request whose answer
never ends: none of the limits above applies once its headers are read (the
body timer stops at the end of its empty GET body, and the keep-alive timer
only runs between requests), and at shutdown ``shutdown`` asks it to end
(through ``STREAM_STOP_SCOPE_KEY``) so uvicorn's graceful stop, which waits
for every open connection, does not wait for it forever.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from scanq.api.edge_parts import CycleTransport, DeadlineTimer
from scanq.api.errors import JSON_MEDIA_TYPE, error_body
from scanq.api.limits import STREAM_STOP_SCOPE_KEY, ConnectionCap, EdgeLimits

logger = logging.getLogger(__name__)

_JSON_CONTENT_TYPE = b"content-type: " + JSON_MEDIA_TYPE.encode() + b"\r\n"


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    code: str
    message: str


class _StopParsing(Exception):
    """Raised in a parser callback to stop at a limit; the parser wraps it in ``HttpParserCallbackError``."""


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``EdgeLimits``; build one with ``edge_protocol``."""

    limits: ClassVar[EdgeLimits]
    cap: ClassVar[ConnectionCap]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._is_refused_connection = False
        # Between requests the next bytes are headers too; this turns False at the last header.
        self._is_reading_headers = True
        self._header_bytes = 0  # received while the headers were incomplete (before the parser buffers them)
        self._header_count = 0
        self._header_section_bytes = 0  # the header lines of the current request, as parsed
        self._is_message_complete = True
        self._refusal: _Refusal | None = None
        self._deferred_refusal: _Refusal | None = None  # for a pipelined request, sent after the answer before it
        # The header and body time limits are deadlines checked by one timer per connection, which fires
        # at the earliest and re-arms itself: setting and clearing them is two float stores per request
        # instead of a timer started and cancelled for each.
        self._header_deadline: float | None = None
        self._body_deadline: float | None = None
        self._keep_alive_deadline: float | None = None  # uvicorn's timeout_keep_alive, between requests
        self._timer = DeadlineTimer(self.loop, self._on_deadline)
        self._linger_timer: TimerHandle | None = None
        self._cycle_transport: CycleTransport | None = None
        # "parse": read the rest of the request through the parser; "discard": the parser is spent, drop bytes.
        self._linger: Literal["parse", "discard"] | None = None
        self._is_closing_after_linger = True
        self._linger_bytes = 0

    # --- connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._is_refused_connection = True
            self.transport = transport
            self.cap.refuse(len(self.connections))
            transport.close()
            return
        super().connection_made(transport)
        self._cycle_transport = CycleTransport(self, transport)
        self._set_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._is_refused_connection:
            return
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server stops: a long-lived answer still being sent (an event stream) is asked to end first."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            stop = cast(dict[str, Any], cycle.scope).get(STREAM_STOP_SCOPE_KEY)
            if callable(stop):
                stop()
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._linger is not None:
            self._linger_bytes += len(data)
            if self._linger_bytes > self.limits.linger_max_bytes:
                self._close_now()
                return
            if self._linger == "discard":
                return
        elif self._is_reading_headers:
            # Counted before parsing: the parser holds an unfinished header line in memory until it ends.
            self._header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if self._linger is not None:
                self._close_now()
                return
            refusal = self._refusal or _Refusal(400, "bad_request", f"invalid HTTP request: {exc}")
            self._refuse(refusal)
            return
        if self._is_reading_headers and self._linger is None and self._header_bytes > self.limits.max_header_bytes:
            message = f"the request headers are larger than {self.limits.max_header_bytes} bytes"
            self._refuse(_Refusal(431, "headers_too_large", message))

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, in the one JSON error shape."""
        self._refuse(_Refusal(400, "bad_request", msg))

    # --- parser callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._is_message_complete = False
        self._header_count = 0
        self._header_section_bytes = 0
        if self._header_deadline is None and self._linger is None:
            self._set_header_deadline()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        limit = self.limits.max_header_line_bytes
        if len(self.url) > limit:
            self._stop(414, "uri_too_long", f"the request target is longer than {limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_section_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.limits.max_headers:
            self._stop(431, "too_many_headers", f"a request may have at most {self.limits.max_headers} headers")
        if len(name) + len(value) > self.limits.max_header_line_bytes:
            self._stop(
                431, "header_too_large", f"a header line is longer than {self.limits.max_header_line_bytes} bytes"
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._header_bytes = 0
        self._is_reading_headers = False
        self._header_deadline = None
        if self._linger is not None or self.transport.is_closing():
            return  # a request pipelined behind one being drained: never started
        # Headers that came in one piece with other bytes were counted in on_header, exactly.
        if len(self.url) + self._header_section_bytes > self.limits.max_header_bytes:
            self._stop(
                431, "headers_too_large", f"the request headers are larger than {self.limits.max_header_bytes} bytes"
            )
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: no request cycle was made
        cycle.transport = cast(asyncio.Transport, self._cycle_transport)
        if not self.pipeline:  # started now, so its body is being read
            self._body_deadline = self._timer.deadline(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        self._is_message_complete = True
        self._is_reading_headers = True
        self._header_bytes = 0
        self._body_deadline = None
        if self._linger is not None:
            self._end_linger()
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._cycle_transport is not None:
            self._cycle_transport.flush()  # a HEAD request's answer: its head had no body to go with
        if self._deferred_refusal is not None and not self.transport.is_closing():
            self.server_state.total_requests += 1
            self._write_error(self._deferred_refusal)
            self._start_linger("discard", is_closing_after=True)
            return
        if self._linger is not None:  # the cycle closed the connection early: it closes once drained
            self.server_state.total_requests += 1
            return
        self._complete_response()
        if not self._is_message_complete and not self.transport.is_closing():
            # Answered before the body arrived, on a connection both sides keep alive: read the rest, bounded.
            self._start_linger("parse", is_closing_after=False)

    # --- early answers and lingering ----------------------------------------------

    def close_after_request(self) -> None:
        """The request cycle closes the connection: at once if the request was read, else after draining it."""
        if self._is_message_complete or self.transport.is_closing() or self.parser is None:
            self._close_now()
        else:
            self._start_linger("parse", is_closing_after=True)

    def _stop(self, status: int, code: str, message: str) -> None:
        self._refusal = _Refusal(status, code, message)
        raise _StopParsing(message)

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer a request the app never saw, then linger and close."""
        if self.transport.is_closing():
            return
        self._header_deadline = self._body_deadline = None
        logger.debug("refused a request (%s): %s", refusal.code, refusal.message)
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request broke a limit while an earlier one is being answered: answer it after that one.
            self._deferred_refusal = refusal
            self.flow.pause_reading()
            return
        self._write_error(refusal)
        self._start_linger("discard", is_closing_after=True)

    def _write_error(self, refusal: _Refusal) -> None:
        body = error_body(refusal.code, refusal.message)
        head = [STATUS_LINE[refusal.status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend([_JSON_CONTENT_TYPE, b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"])
        self.transport.write(b"".join(head) + body)

    def _start_linger(self, mode: Literal["parse", "discard"], *, is_closing_after: bool) -> None:
        self._linger = mode
        self._is_closing_after_linger = is_closing_after
        self._linger_bytes = 0
        self._body_deadline = None
        self._cancel_timer("_linger_timer")
        self._linger_timer = self.loop.call_later(self.limits.linger_s, self._close_now)
        self.flow.resume_reading()
        if is_closing_after and self.transport.can_write_eof():
            # The answer is all we send: a client reading to the end sees it end now, while we drain.
            self.transport.write_eof()

    def _end_linger(self) -> None:
        """The drained request's last byte arrived: close, or go on serving the kept-alive connection."""
        if self._is_closing_after_linger:
            self._close_now()
            return
        self._linger = None
        self._cancel_timer("_linger_timer")
        self._unset_keepalive_if_required()
        self._keep_alive_deadline = self._timer.deadline(self.timeout_keep_alive)

    def _close_now(self) -> None:
        self._cancel_timers()
        if self._cycle_transport is not None:
            self._cycle_transport.flush()
        if not self.transport.is_closing():
            self.transport.close()

    # --- timeouts -----------------------------------------------------------------

    def _complete_response(self) -> None:
        """uvicorn's ``on_response_complete`` (0.54), but the keep-alive limit is a deadline, not a timer per answer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._keep_alive_deadline = self._timer.deadline(self.timeout_keep_alive)

    def _unset_keepalive_if_required(self) -> None:
        """Bytes arrived or the connection ends: the keep-alive limit stops (uvicorn calls this too)."""
        self._keep_alive_deadline = None
        super()._unset_keepalive_if_required()

    def _set_header_deadline(self) -> None:
        self._header_deadline = self._timer.deadline(self.limits.header_timeout_s)

    def _on_deadline(self) -> None:
        """The timer fired: run the time limits that are due, then wait for the next one still set."""
        now = self._timer.now()
        if self._header_deadline is not None and self._header_deadline <= now:
            self._header_deadline = None
            self._on_header_timeout()
        if self._body_deadline is not None and self._body_deadline <= now:
            self._body_deadline = None
            self._on_body_timeout()
        if self._keep_alive_deadline is not None and self._keep_alive_deadline <= now:
            self._keep_alive_deadline = None
            self.timeout_keep_alive_handler()
        deadlines = (self._header_deadline, self._body_deadline, self._keep_alive_deadline)
        pending = [at for at in deadlines if at is not None]
        if pending and not self._timer.is_armed and not self.transport.is_closing():
            self._timer.arm(min(pending))

    def _on_header_timeout(self) -> None:
        if not self._is_reading_headers or self._linger is not None or self.transport.is_closing():
            return
        if self._is_message_complete:  # not one byte of a request yet: nobody to answer
            logger.debug("closed a connection that sent nothing for %.1f s", self.limits.header_timeout_s)
            self._close_now()
            return
        message = f"the request headers did not arrive within {self.limits.header_timeout_s:g} s"
        self._refuse(_Refusal(408, "request_timeout", message))

    def _on_body_timeout(self) -> None:
        if self._is_message_complete or self._linger is not None or self.transport.is_closing():
            return
        logger.debug("closed a connection whose request body did not arrive in time")
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app is waiting for the body: it now reads a disconnect, and anything it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            message = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
            self._write_error(_Refusal(408, "request_timeout", message))
        self._close_now()

    def _cancel_timer(self, name: str) -> None:
        timer: TimerHandle | None = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _cancel_timers(self) -> None:
        self._header_deadline = self._body_deadline = self._keep_alive_deadline = None
        self._timer.cancel()
        self._cancel_timer("_linger_timer")


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """An ``EdgeProtocol`` class bound to ``limits`` (uvicorn builds one instance per connection)."""

    class BoundEdgeProtocol(EdgeProtocol):
        pass

    BoundEdgeProtocol.limits = limits
    BoundEdgeProtocol.cap = ConnectionCap(limits.max_connections)
    return BoundEdgeProtocol


__all__ = ["EdgeProtocol", "edge_protocol"]
