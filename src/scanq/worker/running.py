"""One attempt the worker runs, and why it was stopped (shared by the claim loop and the lease loops)."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from scanq.models import Finish, Lease, Scan


class StopReason(enum.Enum):
    """Why a running attempt's task was cancelled; decides what its outcome becomes."""

    CANCEL_REQUESTED = "cancel requested"  # finished as Cancelled
    LEASE_LOST = "lease lost"  # dropped: another attempt owns the scan now
    TIMED_OUT = "timed out"  # a failure that may pass: retried or Error
    SHUTDOWN = "shutdown"  # the lease is released at the end of the shutdown


@dataclass(slots=True, eq=False)
class Running:
    """An attempt in flight: its task, when it started (loop time) and, once stopped, why."""

    scan: Scan
    lease: Lease
    task: asyncio.Task[Finish]
    started: float
    reason: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        """Cancel the task, recording why."""
        self.reason = reason
        self.task.cancel()


def lease_of(scan: Scan, worker_id: str) -> Lease:
    """The lease ``worker_id`` holds on a scan it claimed."""
    return Lease(scan_id=scan.scan_id, worker_id=worker_id, attempt=scan.attempt)


__all__ = ["Running", "StopReason", "lease_of"]
