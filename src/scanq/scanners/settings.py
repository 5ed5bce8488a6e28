"""What a plugin is built with: its own settings section and the few process settings every plugin may need.

A plugin with options declares a section, a frozen dataclass whose fields are
made with ``setting``, and names it on its class::

    @dataclass(frozen=True, kw_only=True)
    class ShodanSettings:
        api_key: str = setting("", "Shodan: API key")
        max_results: int = setting(100, "Shodan: results read per target")

        def __post_init__(self) -> None:
            if self.max_results < 1:
                raise setting_error("max_results", "must be at least 1", self.max_results)

    class ShodanScanner(Scanner):
        name = "shodan"
        settings_class = ShodanSettings  # settings_namespace defaults to the name
        settings: ShodanSettings

The fields become ``SCANQ_SHODAN_API_KEY`` / ``--shodan-api-key`` and so on,
listed by ``scanq worker --help``, checked at start-up (a bad value stops the
process with one line naming the variable or flag), and handed to the plugin
as ``self.settings``; it never sees the rest of the process's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scanq.config import setting, setting_error


@dataclass(frozen=True, slots=True)
class ScannerContext:
    """The argument of every plugin's constructor.

    Args:
        settings: the plugin's own section (an instance of its ``settings_class``), or None when it has none.
        scan_timeout_seconds: how long the worker lets one scan run (``--scan-timeout-seconds``); a plugin
            may stop its own work a little earlier to report what it has. Infinite outside a worker.
    """

    settings: Any = None
    scan_timeout_seconds: float = math.inf


__all__ = ["ScannerContext", "setting", "setting_error"]
