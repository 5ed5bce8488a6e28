"""What the service commands run: ``scanq up``, and ``scanq ingest`` / ``scanq status`` in one process or N.

The HTTP stack is imported only by the command that serves, not by the worker or the client commands.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scanq.collector import calm_collector
from scanq.config import Settings
from scanq.supervisor.follow import follow_supervisor
from scanq.supervisor.plan import INGEST, Service
from scanq.supervisor.processes import Supervisor

if TYPE_CHECKING:
    from starlette.types import ASGIApp


async def supervise(settings: Settings) -> int:
    """Run ``scanq up`` until SIGINT/SIGTERM; return the exit code."""
    return await Supervisor(settings).run()


def serve_service(settings: Settings, service: Service, *, processes: int | None = None) -> None:
    """``scanq ingest`` / ``scanq status``: serve in this process, or start N children on one socket and wait.

    Either way until SIGINT/SIGTERM; with several processes the exit code is the supervisor's.

    Args:
        settings: the service's settings; its ``<service>_processes`` says how many processes.
        service: which service.
        processes: ``--processes``, over the setting (None: not given).
    """
    settings = settings.replace(**{service.processes_key: processes})
    if service.processes(settings) > 1:
        import uvloop

        sys.exit(uvloop.run(Supervisor(settings, only=service).run()))
    from scanq.api.app import create_ingest_app, create_status_app

    create_app = create_ingest_app if service == INGEST else create_status_app
    serve_app(create_app(settings), settings=settings, port=service.port(settings))


def serve_app(app: ASGIApp, *, settings: Settings, port: int) -> None:
    """Serve an app (``api.server.serve``: uvicorn, uvloop, the edge limits) until SIGINT/SIGTERM.

    In a child of a supervisor it serves the socket it inherited and stops when the supervisor dies.
    What start-up made is frozen out of the cyclic collector's passes first (``scanq.collector``): a
    full pass over it stalled every request in flight for 60 to 160 ms.
    """
    from scanq.api.server import serve

    follow_supervisor()
    calm_collector()
    serve(app, settings=settings, port=port)


__all__ = ["serve_app", "serve_service", "supervise"]
