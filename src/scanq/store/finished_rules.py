"""The rules every backend shares for finished scans: throughput steps, export cursors, terminal statuses."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from scanq.exceptions import ValidationError
from scanq.models import ScanStatus

# finished_counts answers at most this many steps (the API asks for far fewer).
MAX_FINISHED_STEPS = 10_000
FINISHED_STATUSES = (ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED)


def count_steps(*, since: datetime, until: datetime, step_s: float) -> int:
    """How many steps of ``step_s`` seconds cover ``[since, until)`` (0 when empty); ``ValidationError`` past bounds."""
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValidationError(f"step must be a positive number of seconds (got {step_s!r})")
    if until <= since:
        return 0
    steps = math.ceil((until - since).total_seconds() / step_s)
    if steps > MAX_FINISHED_STEPS:
        raise ValidationError(f"{steps} steps asked for; at most {MAX_FINISHED_STEPS}")
    return steps


def finished_buckets(
    *, since: datetime, step_s: float, steps: int, counts: Iterable[tuple[int, str, int]]
) -> list[tuple[datetime, dict[ScanStatus, int]]]:
    """The answer of ``finished_counts``: every step from ``since``, zeros filled in.

    Args:
        counts: (step index, status, scans) as a backend grouped them; indexes outside the window are ignored.
    """
    buckets = [(since + timedelta(seconds=i * step_s), dict.fromkeys(FINISHED_STATUSES, 0)) for i in range(steps)]
    for index, status, n in counts:
        if 0 <= index < steps:
            buckets[index][1][ScanStatus(status)] += n
    return buckets


def check_finished_status(status: ScanStatus | None) -> tuple[ScanStatus, ...]:
    """The terminal statuses ``status`` selects (None: all three); ``ValidationError`` for a live status."""
    if status is None:
        return FINISHED_STATUSES
    if not status.is_terminal:
        raise ValidationError(f"{status} scans are not finished: retention and export take Complete, Error, Cancelled")
    return (status,)


def check_after(after: str | None) -> str | None:
    """An export's ``after`` key; ``ValidationError`` unless it is a scan id."""
    from scanq.ids import is_scan_id

    if after is not None and not is_scan_id(after):
        raise ValidationError(f"invalid export cursor {after!r}: the scan id of the last exported scan")
    return after


__all__ = [
    "FINISHED_STATUSES",
    "MAX_FINISHED_STEPS",
    "check_after",
    "check_finished_status",
    "count_steps",
    "finished_buckets",
]
