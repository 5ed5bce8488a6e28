"""The retention policy: how long finished scans are kept, per terminal status.

Written as ``Complete=30d,Error=90d,Cancelled=7d`` (``--retention`` /
``SCANQ_RETENTION``): a terminal status, ``=``, a positive number and a unit
(``s``, ``m``, ``h``, ``d``). A status left out is kept forever; no rule at
all (the default) turns retention off. ``config`` checks the rules when the
settings are read; the worker enforces them (``scanq.worker.retention``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scanq.models import TERMINAL_STATUSES, ScanStatus

UNIT_SECONDS: Mapping[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE = re.compile(r"(?P<status>[A-Za-z]+)\s*=\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhd])")
# A pass runs every smallest-age / this, between the two bounds below: a 7-day policy passes every
# minute, a 20-second one (a test, a soak) every 5 seconds.
PASSES_PER_AGE = 4
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long finished scans of each terminal status are kept (a status not in ``ages`` is kept forever)."""

    ages: Mapping[ScanStatus, timedelta] = field(default_factory=dict)

    @classmethod
    def parse(cls, rules: Iterable[str]) -> RetentionPolicy:
        """``["Complete=30d", "Error=90d"]`` (the comma-separated setting, split); ``ValueError`` saying what is wrong.

        Status names are matched without regard to case; a status may appear once.
        """
        names = {status.value.lower(): status for status in TERMINAL_STATUSES}
        ages: dict[ScanStatus, timedelta] = {}
        for rule in rules:
            match = _RULE.fullmatch(rule.strip())
            if match is None:
                raise ValueError(f"{rule!r} is not STATUS=AGE (for example Complete=30d; units s, m, h, d)")
            status = names.get(match["status"].lower())
            if status is None:
                raise ValueError(f"{match['status']!r} is not a finished status (Complete, Error, Cancelled)")
            if status in ages:
                raise ValueError(f"{status} appears twice")
            age = timedelta(seconds=float(match["number"]) * UNIT_SECONDS[match["unit"]])
            if age <= timedelta(0):
                raise ValueError(f"{rule!r}: the age must be more than zero")
            ages[status] = age
        return cls(ages=ages)

    @property
    def is_enabled(self) -> bool:
        """Whether any status has an age (the default keeps every scan forever)."""
        return bool(self.ages)

    @property
    def interval_s(self) -> float:
        """How often the worker that holds the retention role runs a pass."""
        if not self.ages:
            return MAX_INTERVAL_S
        shortest = min(self.ages.values()).total_seconds()
        return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, shortest / PASSES_PER_AGE))

    def cutoffs(self, now: datetime) -> dict[ScanStatus, datetime]:
        """For each status with an age: scans finished before this moment are due for deletion."""
        return {status: now - age for status, age in self.ages.items()}

    def __str__(self) -> str:
        return ",".join(f"{status}={_age_text(age)}" for status, age in self.ages.items()) or "keep forever"


def _age_text(age: timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in sorted(UNIT_SECONDS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


__all__ = ["MAX_INTERVAL_S", "MIN_INTERVAL_S", "UNIT_SECONDS", "RetentionPolicy"]
