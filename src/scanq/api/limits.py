"""The HTTP edge's limits: what one service process accepts from a connection, and the connection cap.

``edge.EdgeProtocol`` enforces them inside uvicorn; ``server.serve`` builds
them from the settings (the ``max_connections`` cut to the open-file limit).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from scanq.config import Settings

logger = logging.getLogger(__name__)

MAX_HEADER_LINE_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# What a lingering connection reads and discards at most before it closes anyway.
LINGER_MAX_BYTES = 16 * 1024 * 1024
LINGER_S = 10.0
# A full connection table logs one line at most this often (with the count refused since the last one).
CAP_LOG_INTERVAL_S = 10.0
# A long-lived answer (a server-sent event stream) puts a callable under this key of its ASGI scope; the edge
# calls it when the server shuts down, so the stream ends and the connection closes instead of holding it open.
STREAM_STOP_SCOPE_KEY = "scanq.stream_stop"
# Event streams one process serves at once, as a share of its max_connections: the rest stay for requests.
EVENT_STREAM_SHARE = 0.5


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeLimits:
    """What one service process accepts from a connection.

    Args:
        header_timeout_s: time from a request's first byte (or the connection's start) to its last header.
        body_timeout_s: time from the last header to the body's last byte.
        max_connections: connections open at once; more are closed as soon as they are accepted.
        max_header_line_bytes: the request target, or one header's name and value.
        max_header_bytes: the whole header section, as received.
        max_headers: header lines per request.
        linger_max_bytes: bytes read and discarded after an early answer before the connection closes.
        linger_s: how long a connection may linger after an early answer.
    """

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_header_line_bytes: int = MAX_HEADER_LINE_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    linger_max_bytes: int = LINGER_MAX_BYTES
    linger_s: float = LINGER_S

    @classmethod
    def from_settings(cls, settings: Settings, *, max_connections: int | None = None) -> EdgeLimits:
        """The limits ``settings`` ask for; ``max_connections`` overrides the setting (see ``server.serve``)."""
        return cls(
            header_timeout_s=settings.header_timeout_seconds,
            body_timeout_s=settings.body_timeout_seconds,
            max_connections=settings.max_connections if max_connections is None else max_connections,
        )


class ConnectionCap:
    """Counts connections refused because ``limit`` were open, and says so in the log at most every 10 s.

    Args:
        limit: the ``max_connections`` in force.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused_total = 0
        self._refused_unlogged = 0
        self._logged_at = -math.inf

    def refuse(self, open_connections: int) -> None:
        """Record one refused connection; log it unless a line went out less than 10 s ago."""
        self.refused_total += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < CAP_LOG_INTERVAL_S:
            return
        logger.warning(
            "connection limit reached: %d connections open (max_connections=%d); closing new connections "
            "(%d refused since the last message)",
            open_connections,
            self.limit,
            self._refused_unlogged,
            extra={"action": "connections_refused", "refused": self._refused_unlogged},
        )
        self._logged_at = now
        self._refused_unlogged = 0


__all__ = [
    "CAP_LOG_INTERVAL_S",
    "EVENT_STREAM_SHARE",
    "LINGER_MAX_BYTES",
    "LINGER_S",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_LINE_BYTES",
    "STREAM_STOP_SCOPE_KEY",
    "ConnectionCap",
    "EdgeLimits",
]
