"""The scanner plugin interface.

A plugin is a class registered under the ``scanq.scanners`` entry-point group.
scanq builds one instance per process with the process's ``Settings``, awaits
``validate`` at submit time (ingest) and ``run`` in the worker.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

from scanq.config import Settings


class Scanner(abc.ABC):
    """Base class of every scanner plugin.

    Args:
        settings: the process settings (timeouts, target allow-list, mock timing).
    """

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        """Check a submission before it is stored; return the normalised target.

        Raise ``ValidationError`` (or ``TargetRefused``) to refuse it with a 422.
        It is a coroutine so a plugin may do I/O (the real scanners resolve the
        target); it runs on ingest's hot path, so a plugin that needs none should
        not suspend. The default accepts anything without suspending.
        """
        return target

    @abc.abstractmethod
    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run one scan and return its JSON result.

        Raise ``ScannerError`` for a permanent failure (the scan ends in Error)
        or ``TransientScanError`` to have it retried with backoff while
        attempts are left. Cancellation arrives as ``asyncio.CancelledError``.
        """
