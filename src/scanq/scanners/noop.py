"""The ``noop`` scanner: succeeds at once, for benchmarks and tests of the queue itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scanq.scanners.base import Scanner

_RESULT: Mapping[str, Any] = {"scanner": "noop"}


class NoopScanner(Scanner):
    """Returns a constant result without waiting.

    It reads no option, so it accepts any JSON object as ``options`` on purpose: they are
    the queue's own payload in tests and benchmarks of how options are stored and returned.
    """

    name = "noop"

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        return target  # options are opaque here (see the class docstring); the service checked their shape

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return _RESULT
