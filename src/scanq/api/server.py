"""Serve an app: bind its listening sockets first, then run uvicorn with the edge protocol on them.

Binding before uvicorn starts turns a host that does not resolve or a port
already taken into one ``StartupError`` naming the address (uvicorn would log
the bare ``OSError`` and exit with the code it also uses for a failed
lifespan), so ``scanq up`` can tell "cannot start" from "crashed" and stop.
A process started with listening sockets to share (``--ingest-processes``,
``--status-processes``, ``listeners.py``) serves those instead of binding its own.
"""

from __future__ import annotations

import logging
import resource
import sys

from starlette.types import ASGIApp

from scanq.api.edge import edge_protocol
from scanq.api.limits import EdgeLimits
from scanq.api.listeners import adopt, bind, close, url
from scanq.config import Settings
from scanq.exceptions import StartupError

logger = logging.getLogger(__name__)

# File descriptors kept free for the store, logs and the listening sockets when capping connections.
RESERVED_FDS = 64
# uvicorn's exit code when the app's lifespan (opening the store) fails.
LIFESPAN_FAILURE_EXIT = 3


def serve(app: ASGIApp, *, settings: Settings, port: int) -> None:
    """Serve ``app`` on ``settings.host``:``port`` with uvloop and the edge limits, until SIGINT/SIGTERM.

    HTTPS when ``settings.tls_cert`` and ``tls_key`` name a certificate chain and its key (PEM).

    Args:
        app: the ASGI app.
        settings: ``host`` and the edge limits (timeouts, ``max_connections``).
        port: the port to listen on.

    Raise ``StartupError`` when the host does not resolve or the port cannot be bound.
    """
    import uvicorn

    sockets = adopt() or bind(settings.host, port)
    limits = EdgeLimits.from_settings(settings, max_connections=connection_limit(settings.max_connections))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=edge_protocol(limits),
        access_log=False,
        log_config=None,
        server_header=False,
        ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
    )
    scheme = "https" if settings.tls_cert else "http"
    if settings.tls_cert:
        try:
            config.load()  # reads the certificate and key now: a bad file is one line, before anything listens
        except (OSError, ValueError) as exc:
            close(sockets)
            raise StartupError(f"cannot serve HTTPS with {settings.tls_cert} and {settings.tls_key}: {exc}") from None
    for sock in sockets:
        logger.info("listening on %s", url(sock.getsockname(), scheme), extra={"action": "listening"})
    server = uvicorn.Server(config)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(LIFESPAN_FAILURE_EXIT)


def connection_limit(wanted: int) -> int:
    """``wanted``, or less when the open-file limit could not hold that many connections (with a warning)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - RESERVED_FDS:
        return wanted
    allowed = max(1, soft - RESERVED_FDS)
    logger.warning(
        "max_connections %d is more than the open-file limit (%d) allows: using %d; raise `ulimit -n` for more",
        wanted,
        soft,
        allowed,
    )
    return allowed


__all__ = ["bind", "connection_limit", "serve"]
