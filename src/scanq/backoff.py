"""Exponential backoff with jitter, for retried scans, store outages and restarted processes."""

from __future__ import annotations

import random


def backoff_delay(failures: int, *, base_s: float, max_s: float, full_jitter: bool = True) -> float:
    """Exponential backoff: ``base_s * 2**(failures-1)`` capped at ``max_s``, randomised.

    Args:
        failures: how many times in a row it failed (1 for the first failure).
        base_s: the first delay's ceiling.
        max_s: the largest delay.
        full_jitter: uniform in [0, ceiling] (AWS "full jitter", spreads retries best);
            else uniform in [ceiling/2, ceiling] (never retries at once, for store outages).
    """
    ceiling = min(max_s, base_s * 2.0 ** min(max(failures - 1, 0), 62))
    return random.uniform(0.0 if full_jitter else ceiling / 2, ceiling)
