"""Storage backends, found by URL scheme through the ``scanq.stores`` entry-point group.

A backend is a ``Store`` subclass whose constructor takes the URL (scanq's own
options travel in its query string, typed by the backend: see
``url_options``). A third-party backend is one package plus one entry point
per scheme, like a scanner plugin::

    [project.entry-points."scanq.stores"]
    redis = "scanq_redis:RedisStore"
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from scanq.exceptions import ConfigError
from scanq.store.base import Store

ENTRY_POINT_GROUP = "scanq.stores"

logger = logging.getLogger(__name__)


@cache
def store_schemes() -> dict[str, str]:
    """Every installed backend: URL scheme → ``module:Class`` (loaded only when a URL asks for it)."""
    return {ep.name.lower(): ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def store_class(scheme: str) -> type[Store]:
    """The backend registered for ``scheme``; raise ``ConfigError`` when none is, or it cannot be imported."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name.lower() == scheme]
    if not found:
        known = ", ".join(f"{name}://" for name in sorted(store_schemes()) if name != "memory")
        raise ConfigError(f"SCANQ_DATABASE_URL: unsupported scheme {scheme!r} (use {known})", setting="database_url")
    try:
        cls = found[0].load()
    except ImportError as exc:
        raise ConfigError(
            f"SCANQ_DATABASE_URL: the {scheme}:// backend is not installed ({exc}); install scanq[all]",
            setting="database_url",
        ) from exc
    if not (isinstance(cls, type) and Store in cls.__mro__):
        raise TypeError(f"entry point {found[0].name!r} in {ENTRY_POINT_GROUP} is not a Store subclass")
    return cls


def open_store(url: str) -> Store:
    """Build the backend for ``url`` (not yet connected: use ``async with open_store(url) as store``).

    Args:
        url: ``sqlite:///path/scanq.db``, ``postgresql://…`` or ``mongodb://…`` (``memory://NAME`` for tests);
            backend options go in the query string (``?max_pool=4``), see each backend's ``Options``.
    """
    scheme = url.split(":", 1)[0].lower()
    return store_class(scheme)(url)  # type: ignore[call-arg]


__all__ = ["ENTRY_POINT_GROUP", "Store", "open_store", "store_class", "store_schemes"]
