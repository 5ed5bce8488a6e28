"""scanq: a durable job queue for cyber scans with an HTTP submit/status API.

``scanq.Client`` and ``scanq.AsyncClient`` are the Python client (``scanq.sdk``),
loaded on first use: ``import scanq`` alone stays cheap, and a worker, which
imports ``scanq.worker``, never loads httpx for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanq.sdk import AsyncClient, Client

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

_LAZY = {"Client": "scanq.sdk", "AsyncClient": "scanq.sdk"}


def __getattr__(name: str) -> object:
    """``scanq.Client`` and ``scanq.AsyncClient``, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scanq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
