"""The scanner plugin interface.

A plugin is a class registered under the ``scanq.scanners`` entry-point group.
scanq builds one instance per process with a ``ScannerContext`` (the plugin's
own settings, see ``scanners.settings``), awaits ``validate`` at submit time
(ingest) and ``run`` in the worker.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

from scanq.scanners.settings import ScannerContext


class Scanner(abc.ABC):
    """Base class of every scanner plugin.

    Class attributes:
        name: the plugin's name in requests (``"scanner": "mock"``).
        settings_class: its settings section (a frozen dataclass of ``setting`` fields), or None.
        settings_namespace: the prefix of its flags and variables (default: ``name``); plugins that
            share a section share a namespace.

    Args:
        context: the plugin's settings (``self.settings``; a subclass narrows the type) and the scan timeout.
    """

    name: ClassVar[str]
    settings_class: ClassVar[type[Any] | None] = None
    settings_namespace: ClassVar[str | None] = None

    settings: Any

    def __init__(self, context: ScannerContext) -> None:
        self.context = context
        settings = context.settings
        if settings is None and self.settings_class is not None:
            settings = self.settings_class()  # a plugin built by hand, without settings: the defaults
        self.settings = settings

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        """Check a submission before it is stored; return the normalised target.

        Raise ``ValidationError`` (or ``TargetRefused``) to refuse it with a 422.
        It is a coroutine so a plugin may do I/O (the real scanners resolve the
        target); it runs on ingest's hot path, so a plugin that needs none should
        not suspend. The default accepts anything without suspending.
        """
        return target

    def politeness_key(self, *, target: str | None) -> str | None:
        """The host a scan of the (normalised) ``target`` loads, for the per-target cap; None: never capped.

        A plugin that connects to its target returns the host, so workers never run more than
        ``--max-per-target`` scans against one host at once. The default (mock, noop): None.
        """
        return None

    @abc.abstractmethod
    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run one scan and return its JSON result.

        Raise ``ScannerError`` for a permanent failure (the scan ends in Error)
        or ``TransientScanError`` to have it retried with backoff while
        attempts are left. Cancellation arrives as ``asyncio.CancelledError``.
        """
