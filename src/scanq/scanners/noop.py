"""The ``noop`` scanner: succeeds at once, for benchmarks and tests of the queue itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scanq.scanners.base import Scanner

_RESULT: Mapping[str, Any] = {"scanner": "noop"}


class NoopScanner(Scanner):
    """Returns a constant result without waiting."""

    name = "noop"

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return _RESULT
