"""One attempt the worker runs, and why it was stopped (shared by the claim loop and the lease loops)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from scanq.models import Finish, Lease, Outcome, Scan
from scanq.record_makers import make_finish, make_lease

# Let through the task after the attempt ended: what stops the process, or closes the coroutine.
_PASSED_ON = (KeyboardInterrupt, SystemExit, GeneratorExit)


class StopReason(enum.Enum):
    """Why a running attempt's task was cancelled; decides what its outcome becomes."""

    CANCEL_REQUESTED = "cancel requested"  # finished as Cancelled
    LEASE_LOST = "lease lost"  # dropped: another attempt owns the scan now
    TIMED_OUT = "timed out"  # a failure that may pass: retried or Error
    SHUTDOWN = "shutdown"  # the lease is released at the end of the shutdown


@dataclass(slots=True, eq=False)
class Running:
    """An attempt in flight (``attempt``, run by ``task``), when it started (loop time) and, once stopped, why.

    ``end`` is told once how the attempt ended: its ``Finish``, or None when it was cancelled. The
    task (``run``) reports it itself at its end, in the same step: no done callback per scan. A task
    stopped before its first step never runs its body, so a stop also reports from the task's done
    callback, and closes the attempt that never started (a second report is ignored: ``is_ended``,
    which ``end`` sets).
    """

    scan: Scan
    lease: Lease
    started: float
    end: Callable[[Running, Finish | None], None]
    attempt: Coroutine[Any, Any, Finish]
    reason: StopReason | None = None
    is_ended: bool = False
    task: asyncio.Task[None] = field(init=False)

    async def run(self) -> None:
        """The task's body: the attempt, then ``end`` told its outcome."""
        try:
            finish = await self.attempt
        except asyncio.CancelledError:
            self.end(self, None)
            raise
        except BaseException as exc:  # not an Exception (the attempt runner turns those into a Finish)
            self.end(self, make_finish(self.lease, Outcome.ERROR, None, f"{type(exc).__name__}: {exc}", None))
            if isinstance(exc, _PASSED_ON):
                raise
            return
        self.end(self, finish)

    def stop(self, reason: StopReason) -> None:
        """Cancel the task, recording why."""
        self.reason = reason
        self.cancel()

    def cancel(self) -> None:
        """Cancel the task; its end is reported even if it is cancelled before its first step."""
        self.task.cancel()
        self.task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if not self.is_ended:  # cancelled before its first step
            self.attempt.close()
            self.end(self, None)


def lease_of(scan: Scan, worker_id: str) -> Lease:
    """The lease ``worker_id`` holds on a scan it claimed."""
    return make_lease(scan.scan_id, worker_id, scan.attempt)


__all__ = ["Running", "StopReason", "lease_of"]
