"""Per-connection parts of the HTTP edge (``edge.EdgeProtocol``): the transport a request cycle writes to,
and the one timer that watches a connection's time limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol


class EdgeConnection(Protocol):
    """What ``CycleTransport`` needs of its connection (``edge.EdgeProtocol``)."""

    @property
    def cycle(self) -> Any:
        """uvicorn's current request cycle (None before the first request)."""
        ...

    def close_after_request(self) -> None:
        """Close at once if the request was read, else after draining it."""
        ...


class CycleTransport:
    """The transport as uvicorn's request cycle sees it (one per connection).

    Closing it before the request body has arrived lingers. And a response head that declares its
    ``Content-Length`` is held until the body's first write, so head and body leave in one ``send``
    instead of two (uvicorn writes them separately): one system call per answer fewer, for the
    server and for the client reading it. Nothing else waits: a held head goes out with the next
    write, when the response completes (a HEAD request's answer has no body write), or before the
    connection closes. Streamed answers (chunked: event streams) are never held.
    """

    __slots__ = ("_head_of", "_held", "_protocol", "_transport")

    def __init__(self, protocol: EdgeConnection, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport
        self._held: bytes | None = None
        self._head_of: object = None  # the request cycle whose response head was written last

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._protocol.cycle
        # uvicorn marks the response started, then writes its head: the first write after that is the head.
        if cycle is not None and cycle.response_started and cycle is not self._head_of:
            self._head_of = cycle
            if cycle.chunked_encoding is False and not cycle.response_complete:
                self._held = data
                return
        self._transport.write(data)

    def flush(self) -> None:
        """Send a held response head now."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._protocol.close_after_request()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class DeadlineTimer:
    """One timer for a connection's deadlines (headers, body, keep-alive).

    Starting and cancelling an event-loop timer for each limit of each request costs
    microseconds a request (uvloop allocates and frees a libuv handle each time); a
    deadline is a float instead. The timer fires at the earliest deadline it was armed
    for; ``on_fire`` runs the limits that are due and arms it again for the next one.

    Args:
        loop: the connection's event loop.
        on_fire: called when the timer fires (after ``is_armed`` turned False).
    """

    __slots__ = ("_at", "_handle", "_loop", "_on_fire")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_fire: Callable[[], None]) -> None:
        self._loop = loop
        self._on_fire = on_fire
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    @property
    def is_armed(self) -> bool:
        return self._handle is not None

    def deadline(self, timeout_s: float) -> float:
        """The deadline ``timeout_s`` from now; the timer is moved earlier if it would fire after it."""
        at = self._loop.time() + timeout_s
        if self._handle is None or self._at > at:
            self.arm(at)
        return at

    def arm(self, at: float) -> None:
        """Fire at loop time ``at`` (and not before)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(at, self._fire)
        self._at = at

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def now(self) -> float:
        return self._loop.time()

    def _fire(self) -> None:
        self._handle = None
        self._on_fire()


__all__ = ["CycleTransport", "DeadlineTimer", "EdgeConnection"]
