"""``scanq up``: run ingest, status and N workers as child processes on one machine, and stop them together.

Also ``scanq ingest --processes N`` and ``scanq status --processes N``: the
same supervisor with one service's processes only. With
``--ingest-processes N`` / ``--status-processes N`` (N > 1) it binds that
service's port once and its N children (``ingest-1`` …, ``status-1`` …) serve
that socket (``api/listeners.py``); one restarts while the others go on
accepting.

- ``plan.py``: the children (the services and the workers) and the environment each gets.
- ``processes.py``: ``Supervisor``, which starts, labels, restarts and stops them.
- ``output.py``: the banner, each child's lines labelled with its name, why a child stopped.
- ``follow.py``: the child's side, so that no child outlives its supervisor, even one killed by SIGKILL.
- ``commands.py``: what ``scanq up``, ``scanq ingest``, ``scanq status`` and ``scanq api`` call.
"""

from __future__ import annotations

from scanq.supervisor.commands import serve_app, serve_service, supervise
from scanq.supervisor.follow import SUPERVISOR_PID_ENV, follow_supervisor
from scanq.supervisor.plan import INGEST, SERVICES, STATUS, Service
from scanq.supervisor.processes import Supervisor, prepare_store

__all__ = [
    "INGEST",
    "SERVICES",
    "STATUS",
    "SUPERVISOR_PID_ENV",
    "Service",
    "Supervisor",
    "follow_supervisor",
    "prepare_store",
    "serve_app",
    "serve_service",
    "supervise",
]
