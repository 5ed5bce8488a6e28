"""The child's side of supervision: die with the supervisor, however the supervisor dies.

Each child is started in its own session, so a terminal's Ctrl-C reaches only
the supervisor (which then stops every child once, gracefully), and the child
asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``
on Linux; elsewhere a thread watches the parent pid). The supervisor's pid
comes in ``SCANQ_SUPERVISOR_PID``, which also marks its children in ``/proc``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

SUPERVISOR_PID_ENV = "SCANQ_SUPERVISOR_PID"
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1


def follow_supervisor(environ: Mapping[str, str] = os.environ) -> None:
    """In a child of ``scanq up``: get SIGTERM when the supervisor dies, however it dies.

    Does nothing outside ``scanq up``. On Linux the kernel delivers the signal
    (``PR_SET_PDEATHSIG``); elsewhere a daemon thread polls the parent pid.
    Either way the child then shuts down as on any SIGTERM (workers release their scans).
    """
    expected = environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(int(expected),), name="scanq-parent-watch", daemon=True).start()
    if os.getppid() != int(expected):  # the supervisor died before the kernel could be told
        os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["PARENT_POLL_S", "SUPERVISOR_PID_ENV", "follow_supervisor"]
