"""A scanner whose behaviour each scan chooses through its options, for worker tests.

Options:
    sleep: seconds to sleep before answering (default 0).
    fail: ``transient``, ``permanent`` or ``crash`` (a plain ValueError).
    fail_times: fail only the first N runs of this scan (default: every run).
    block: wait on the scanner's ``release`` event (never set unless a test sets it).
    bad_result: ``object`` (a value JSON cannot hold) or ``list`` (not a JSON object) instead of a result.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from scanq.config import Settings
from scanq.exceptions import ScannerError, TransientScanError
from scanq.ids import new_scan_id
from scanq.models import NewScan
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.scanners.settings import ScannerContext


class ScriptedScanner(Scanner):
    """See the module docstring; records what ran so tests can assert on it."""

    name = "scripted"

    def __init__(self, context: ScannerContext) -> None:
        super().__init__(context)
        self.runs: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.max_running = 0
        self.cancelled: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        self.runs[scan_id] += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            if options.get("block"):
                await self.release.wait()
            if sleep := float(options.get("sleep", 0)):
                await asyncio.sleep(sleep)
        except asyncio.CancelledError:
            self.cancelled.append(scan_id)
            raise
        finally:
            self.running -= 1
        fail = options.get("fail")
        if fail and self.runs[scan_id] <= int(options.get("fail_times", 1_000_000)):
            if fail == "transient":
                raise TransientScanError(f"transient failure {self.runs[scan_id]}")
            if fail == "permanent":
                raise ScannerError("permanent failure")
            raise ValueError("boom")
        if options.get("bad_result") == "object":
            return {"value": object()}
        if options.get("bad_result") == "list":
            return [1, 2]  # type: ignore[return-value]
        return {"scanner": "scripted", "runs": self.runs[scan_id]}


def scripted_registry(settings: Settings) -> tuple[ScannerRegistry, ScriptedScanner]:
    """A registry with the scripted scanner (and the installed ones), and the scanner instance."""
    registry = ScannerRegistry(settings, extra={"scripted": ScriptedScanner})
    scanner = registry.get("scripted")
    assert isinstance(scanner, ScriptedScanner)
    return registry, scanner


def new_scan(*, max_attempts: int = 3, scanner: str = "scripted", **options: Any) -> NewScan:
    """A NewScan for the scripted scanner with ``options``."""
    return NewScan(
        scan_id=new_scan_id(),
        created_at=datetime.now(UTC),
        scanner=scanner,
        options=options,
        max_attempts=max_attempts,
    )
