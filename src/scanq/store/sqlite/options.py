"""What a ``sqlite:///`` URL says: the database file, and scanq's options from its query string.

``sqlite:////var/lib/scanq/scanq.db?busy_timeout_s=5&readers=4`` is the file
``/var/lib/scanq/scanq.db`` with a 5 s lock timeout and four reader threads (for reads too long for the event
loop: ``readers.py``).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from scanq.exceptions import ConfigError
from scanq.store.url_options import option_names, parse_options, split_options

URL_PREFIX = "sqlite:///"
DEFAULT_WAKE_INTERVAL_S = 0.002
DEFAULT_BUSY_TIMEOUT_S = 10.0
DEFAULT_READERS = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class SQLiteOptions:
    """The SQLite store's options.

    Args:
        wake_interval_s: how often an idle ``wait_for_work`` checks ``PRAGMA data_version``.
        busy_timeout_s: how long a write waits for another process's write lock before ``StoreUnavailable``.
        readers: reader threads (connections) for the reads too long to run on the event loop (lists, exports).
    """

    wake_interval_s: float = DEFAULT_WAKE_INTERVAL_S
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    readers: int = DEFAULT_READERS


def parse_url(
    url: str,
    *,
    wake_interval_s: float | None = None,
    busy_timeout_s: float | None = None,
    readers: int | None = None,
) -> tuple[Path, SQLiteOptions]:
    """The database file of ``url`` and scanq's options; a keyword given here (not None) wins over the URL.

    Raise ``ConfigError`` naming ``SCANQ_DATABASE_URL`` on a bad URL or value.
    """
    path = sqlite_path(url)
    _, values = split_options(url, option_names(SQLiteOptions))
    given = {"wake_interval_s": wake_interval_s, "busy_timeout_s": busy_timeout_s, "readers": readers}
    overrides = {name: value for name, value in given.items() if value is not None}
    return path, parse_options(SQLiteOptions, values, **overrides)


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` URL (SQLAlchemy's convention)."""
    if not url.lower().startswith(URL_PREFIX):
        raise ConfigError(f"SCANQ_DATABASE_URL: {url!r} is not sqlite:///relative.db or sqlite:////absolute.db")
    raw = urllib.parse.unquote(url[len(URL_PREFIX) :].split("?", 1)[0])
    if not raw or raw.startswith(":memory:"):
        raise ConfigError(f"SCANQ_DATABASE_URL: {url!r} names no database file")
    return Path(raw)


__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_READERS",
    "DEFAULT_WAKE_INTERVAL_S",
    "SQLiteOptions",
    "parse_url",
    "sqlite_path",
]
