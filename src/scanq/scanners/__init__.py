"""Scanner plugins, found by name through the ``scanq.scanners`` entry-point group."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from scanq.config import Settings
from scanq.exceptions import UnknownScanner
from scanq.scanners.base import Scanner

ENTRY_POINT_GROUP = "scanq.scanners"

logger = logging.getLogger(__name__)


@cache
def available_scanners() -> dict[str, type[Scanner]]:
    """Every installed plugin class by name.

    A plugin whose module cannot be imported (say the real scanners without the
    ``scanners`` extra's libraries) is left out with a warning, so it cannot take
    the other plugins down with it.
    """
    found: dict[str, type[Scanner]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except ImportError as exc:
            logger.warning("scanner plugin %s not available: %s", ep.name, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Scanner)):
            raise TypeError(f"entry point {ep.name!r} in {ENTRY_POINT_GROUP} is not a Scanner subclass")
        found[ep.name] = cls
    return found


class ScannerRegistry:
    """The plugin instances of one process, built lazily by name.

    Args:
        settings: handed to every plugin's constructor.
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
            scanner = self._instances[name] = cls(self._settings)
        return scanner


__all__ = ["ENTRY_POINT_GROUP", "Scanner", "ScannerRegistry", "available_scanners"]
