"""The ``mock`` scanner: the original system's stand-in for real work."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanq.exceptions import ScannerError, ValidationError
from scanq.scanners.base import Scanner
from scanq.scanners.settings import setting, setting_error

OPTION_NAMES = ("min_sleep", "max_sleep", "failure_rate")


@dataclass(frozen=True, kw_only=True)
class MockSettings:
    """The mock scanner's timing (the original ``MIN_SLEEP``, ``MAX_SLEEP`` and ``CHANCE_OF_FAILURE`` set it too)."""

    min_sleep: float = setting(1.0, "Mock scanner: shortest run in seconds", aliases=("MIN_SLEEP",))
    max_sleep: float = setting(5.0, "Mock scanner: longest run in seconds", aliases=("MAX_SLEEP",))
    failure_rate: float = setting(0.1, "Mock scanner: probability a scan fails", aliases=("CHANCE_OF_FAILURE",))
    polite: bool = setting(False, "Mock scanner: count its targets against --max-per-target like a real scanner")

    def __post_init__(self) -> None:
        if self.min_sleep < 0:
            raise setting_error("min_sleep", "must not be negative", self.min_sleep)
        if self.max_sleep < self.min_sleep:
            raise setting_error("max_sleep", f"must be at least mock_min_sleep ({self.min_sleep})", self.max_sleep)
        if not 0.0 <= self.failure_rate <= 1.0:
            raise setting_error("failure_rate", "must be a probability between 0 and 1", self.failure_rate)


@dataclass(frozen=True, kw_only=True, slots=True)
class MockOptions:
    """One scan's overrides of the settings; None where the scan gave none."""

    min_sleep: float | None = None
    max_sleep: float | None = None
    failure_rate: float | None = None


def parse_options(options: Mapping[str, Any]) -> MockOptions:
    """Check a scan's options; raise ``ValidationError`` naming the first bad one.

    Each is a finite number (not a boolean): the sleeps non-negative seconds, ``failure_rate``
    a probability. ``min_sleep`` above ``max_sleep`` is refused only when the scan gives both:
    against a setting it is not, since the worker's settings may differ from ingest's.
    """
    if not options:
        return MockOptions()
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValidationError(f"unknown mock option(s): {', '.join(unknown)} (allowed: {', '.join(OPTION_NAMES)})")
    values: dict[str, float] = {}
    for name in OPTION_NAMES:
        if name not in options:
            continue
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(f"option {name!r} must be a number (got {value!r})")
        if value < 0:
            raise ValidationError(f"option {name!r} must not be negative (got {value!r})")
        values[name] = float(value)
    if values.get("failure_rate", 0.0) > 1.0:
        raise ValidationError(
            f"option 'failure_rate' must be a probability between 0 and 1 (got {values['failure_rate']!r})"
        )
    low, high = values.get("min_sleep"), values.get("max_sleep")
    if low is not None and high is not None and high < low:
        raise ValidationError(f"option 'max_sleep' must be at least min_sleep ({low:g}) (got {high:g})")
    return MockOptions(**values)


class MockScanner(Scanner):
    """Sleeps a uniform random time in [min_sleep, max_sleep] and fails with failure_rate.

    Per-scan ``options`` may override ``min_sleep``, ``max_sleep`` and ``failure_rate``; they are
    checked at submit time (``parse_options``). A ``min_sleep`` above the worker's ``max_sleep``
    (or the reverse) is a run of exactly ``min_sleep``.
    """

    name = "mock"
    settings_class = MockSettings
    settings: MockSettings

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        parse_options(options)  # no I/O: this is ingest's hot path
        return target

    def politeness_key(self, *, target: str | None) -> str | None:
        """The target itself when ``--mock-polite`` asks for the cap (tests, benchmarks), else None."""
        return target if self.settings.polite and target else None

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            opts = parse_options(options)
        except ValidationError as exc:  # stored before options were checked, or written to the store directly
            raise ScannerError(exc.message) from None
        low = self.settings.min_sleep if opts.min_sleep is None else opts.min_sleep
        high = self.settings.max_sleep if opts.max_sleep is None else opts.max_sleep
        failure_rate = self.settings.failure_rate if opts.failure_rate is None else opts.failure_rate
        duration = random.uniform(low, max(low, high))
        await asyncio.sleep(duration)
        if random.random() < failure_rate:
            raise ScannerError(f"mock scan failed (failure rate {failure_rate})")
        return {"scanner": "mock", "target": target, "slept_s": round(duration, 3)}
