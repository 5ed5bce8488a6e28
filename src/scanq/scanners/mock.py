"""The ``mock`` scanner: the original system's stand-in for real work."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanq.exceptions import ScannerError
from scanq.scanners.base import Scanner
from scanq.scanners.settings import setting, setting_error


@dataclass(frozen=True, kw_only=True)
class MockSettings:
    """The mock scanner's timing (the original ``MIN_SLEEP``, ``MAX_SLEEP`` and ``CHANCE_OF_FAILURE`` set it too)."""

    min_sleep: float = setting(1.0, "Mock scanner: shortest run in seconds", aliases=("MIN_SLEEP",))
    max_sleep: float = setting(5.0, "Mock scanner: longest run in seconds", aliases=("MAX_SLEEP",))
    failure_rate: float = setting(0.1, "Mock scanner: probability a scan fails", aliases=("CHANCE_OF_FAILURE",))

    def __post_init__(self) -> None:
        if self.min_sleep < 0:
            raise setting_error("min_sleep", "must not be negative", self.min_sleep)
        if self.max_sleep < self.min_sleep:
            raise setting_error("max_sleep", f"must be at least mock_min_sleep ({self.min_sleep})", self.max_sleep)
        if not 0.0 <= self.failure_rate <= 1.0:
            raise setting_error("failure_rate", "must be a probability between 0 and 1", self.failure_rate)


class MockScanner(Scanner):
    """Sleeps a uniform random time in [min_sleep, max_sleep] and fails with failure_rate.

    Per-scan ``options`` may override ``min_sleep``, ``max_sleep`` and ``failure_rate``.
    """

    name = "mock"
    settings_class = MockSettings
    settings: MockSettings

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        low = float(options.get("min_sleep", self.settings.min_sleep))
        high = float(options.get("max_sleep", self.settings.max_sleep))
        failure_rate = float(options.get("failure_rate", self.settings.failure_rate))
        duration = random.uniform(low, max(low, high))
        await asyncio.sleep(duration)
        if random.random() < failure_rate:
            raise ScannerError(f"mock scan failed (failure rate {failure_rate})")
        return {"scanner": "mock", "target": target, "slept_s": round(duration, 3)}
