"""Skip a backend locally, fail under CI: CI must never turn green with a backend left out."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def backend_unavailable(reason: str) -> NoReturn:
    """Skip the test (developer machine) or fail it (``CI=true``)."""
    if is_ci():
        pytest.fail(f"backend unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)
