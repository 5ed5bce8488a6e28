"""Scanner plugins, found by name through the ``scanq.scanners`` entry-point group.

The plugin API is here (``base.Scanner``, ``settings.ScannerContext``, this
registry) with the stand-ins ``mock`` and ``noop``; the network scanners and
their library live in ``scanners.net``, registered like any third-party plugin.
"""

from __future__ import annotations

from functools import cache

from scanq.config import SCANNER_ENTRY_POINTS, Settings, installed_scanner_classes
from scanq.exceptions import UnknownScanner
from scanq.scanners.base import Scanner
from scanq.scanners.settings import ScannerContext

ENTRY_POINT_GROUP = SCANNER_ENTRY_POINTS


@cache
def available_scanners() -> dict[str, type[Scanner]]:
    """Every installed plugin class by name (one that cannot be imported is left out with a warning)."""
    found: dict[str, type[Scanner]] = {}
    for name, cls in installed_scanner_classes().items():
        if not issubclass(cls, Scanner):
            raise TypeError(f"entry point {name!r} in {ENTRY_POINT_GROUP} is not a Scanner subclass")
        found[name] = cls
    return found


class ScannerRegistry:
    """The plugin instances of one process, built lazily by name.

    Args:
        settings: each plugin gets its own section of ``settings.plugins`` and the scan timeout, nothing else.
        extra: plugins to add or override by name (tests, embedding).
    """

    def __init__(self, settings: Settings, extra: dict[str, type[Scanner]] | None = None) -> None:
        self._settings = settings
        self._classes = {**available_scanners(), **(extra or {})}
        self._instances: dict[str, Scanner] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> Scanner:
        """The plugin called ``name``; raise ``UnknownScanner``."""
        scanner = self._instances.get(name)
        if scanner is None:
            cls = self._classes.get(name)
            if cls is None:
                raise UnknownScanner(f"unknown scanner {name!r} (installed: {', '.join(self.names)})")
            scanner = self._instances[name] = cls(self.context_for(cls))
        return scanner

    def context_for(self, cls: type[Scanner]) -> ScannerContext:
        """What plugin class ``cls`` is built with."""
        section = None if cls.settings_class is None else self._settings.plugins[cls.settings_class]
        return ScannerContext(section, scan_timeout_seconds=self._settings.scan_timeout_seconds)


__all__ = ["ENTRY_POINT_GROUP", "Scanner", "ScannerContext", "ScannerRegistry", "available_scanners"]
