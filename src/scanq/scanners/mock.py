"""The ``mock`` scanner: the original system's stand-in for real work."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from scanq.exceptions import ScannerError
from scanq.scanners.base import Scanner


class MockScanner(Scanner):
    """Sleeps a uniform random time in [mock_min_sleep, mock_max_sleep] and fails with mock_failure_rate.

    Per-scan ``options`` may override ``min_sleep``, ``max_sleep`` and ``failure_rate``.
    """

    name = "mock"

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        low = float(options.get("min_sleep", self.settings.mock_min_sleep))
        high = float(options.get("max_sleep", self.settings.mock_max_sleep))
        failure_rate = float(options.get("failure_rate", self.settings.mock_failure_rate))
        duration = random.uniform(low, max(low, high))
        await asyncio.sleep(duration)
        if random.random() < failure_rate:
            raise ScannerError(f"mock scan failed (failure rate {failure_rate})")
        return {"scanner": "mock", "target": target, "slept_s": round(duration, 3)}
