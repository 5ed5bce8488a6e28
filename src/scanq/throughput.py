"""Throughput: how many scans finished, per terminal status, in each step of a recent window.

``GET /stats/throughput`` and the dashboard's chart read it; ``ScanService.throughput``
asks the store for the counts (from its ``finished_at`` index) within the bounds here,
so the cost is bounded by the window, never by the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from scanq.exceptions import ValidationError
from scanq.models import ScanStatus

# GET /stats/throughput: a window of at most a day, in steps of at least a second, at most this many steps.
MAX_THROUGHPUT_WINDOW_S = 24 * 3600.0
MIN_THROUGHPUT_STEP_S = 1.0
MAX_THROUGHPUT_BUCKETS = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class Throughput:
    """Scans finished per terminal status in each step of ``[since, until)``, oldest step first, every step present.

    The edges are whole multiples of ``step_s`` since the epoch (calls made a moment apart agree on them) and
    ``until`` lies just after now: the last step is the one still filling.
    """

    since: datetime
    until: datetime
    step_s: float
    buckets: Sequence[tuple[datetime, Mapping[ScanStatus, int]]]


def check_throughput_bounds(*, window_s: float, step_s: float) -> int:
    """The number of steps in the window; raise ``ValidationError`` for bounds a caller may not ask for."""
    if not math.isfinite(step_s) or step_s < MIN_THROUGHPUT_STEP_S:
        raise ValidationError(f"step must be at least {MIN_THROUGHPUT_STEP_S:g}s (got {step_s:g}s)")
    if not math.isfinite(window_s) or not 0 < window_s <= MAX_THROUGHPUT_WINDOW_S:
        raise ValidationError(
            f"window must be more than 0s and at most {MAX_THROUGHPUT_WINDOW_S:g}s (got {window_s:g}s)"
        )
    steps = math.ceil(window_s / step_s - 1e-9)
    if steps > MAX_THROUGHPUT_BUCKETS:
        raise ValidationError(
            f"window / step gives {steps} steps; at most {MAX_THROUGHPUT_BUCKETS} (use a longer step)"
        )
    return steps


__all__ = [
    "MAX_THROUGHPUT_BUCKETS",
    "MAX_THROUGHPUT_WINDOW_S",
    "MIN_THROUGHPUT_STEP_S",
    "Throughput",
    "check_throughput_bounds",
]
