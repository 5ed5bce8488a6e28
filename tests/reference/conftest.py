"""Fixtures of the reference-comparison suite: scanq's scanners allowed to scan this machine's loopback.

Each lab module (``tls_lab``, ``ports_lab``, ...) starts its own servers; a reference tool that cannot be
had skips its cases locally and fails them under ``CI=true`` (``reference_unavailable``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import pytest

from scanq.scanners.net.settings import NetSettings
from scanq.scanners.settings import ScannerContext
from tests.servers.availability import is_ci

LOOPBACK_ALLOWLIST = ("127.0.0.0/8",)


def reference_unavailable(reason: str) -> NoReturn:
    """Skip (a developer's machine) or fail (``CI=true``): CI never passes with a reference left out."""
    if is_ci():
        pytest.fail(f"reference tool unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def loopback_context() -> Callable[..., ScannerContext]:
    """A scanner context that may target 127.0.0.0/8; keyword arguments override ``NetSettings`` fields."""

    def make(**overrides: Any) -> ScannerContext:
        values: dict[str, Any] = {
            "target_allowlist": LOOPBACK_ALLOWLIST,
            "connect_timeout_seconds": 3.0,
            "plugin_timeout_seconds": 60.0,
        }
        values.update(overrides)
        return ScannerContext(NetSettings(**values))

    return make
