"""The MongoDB store's own options: read from the URL query string, the rest of the URL goes to PyMongo.

``mongodb://host/DATABASE?replicaSet=rs0&collection=scans&poll_interval_s=0.5``
gives PyMongo ``mongodb://host/DATABASE?replicaSet=rs0`` and scanq a
``MongoOptions(collection="scans", poll_interval_s=0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanq.store.url_options import option_names, parse_options, split_options

DEFAULT_DATABASE = "scanq"
DEFAULT_COLLECTION = "scans"
POLL_INTERVAL_S = 0.25
COLLECTION_OPTION = "collection"


@dataclass(frozen=True, kw_only=True, slots=True)
class MongoOptions:
    """scanq's options of a MongoDB URL.

    Args:
        collection: the collection of scans (``?collection=``).
        poll_interval_s: how often ``wait_for_work`` looks for work when the server has no change streams.
    """

    collection: str = DEFAULT_COLLECTION
    poll_interval_s: float = POLL_INTERVAL_S


OPTION_NAMES = option_names(MongoOptions)


def split_url(url: str) -> tuple[str, str | None]:
    """Remove scanq's own query options from a MongoDB URL; return the URL for PyMongo and the collection name."""
    client_url, values = split_options(url, OPTION_NAMES)
    return client_url, values.get(COLLECTION_OPTION) or None


def parse_url(url: str, **overrides: Any) -> tuple[str, MongoOptions]:
    """The URL for PyMongo and the typed options; ``overrides`` that are not None win over the URL's.

    An empty ``?collection=`` means the default collection.
    """
    client_url, values = split_options(url, OPTION_NAMES)
    if not values.get(COLLECTION_OPTION):
        values.pop(COLLECTION_OPTION, None)
    given = {name: value for name, value in overrides.items() if value is not None}
    return client_url, parse_options(MongoOptions, values, **given)


__all__ = ["DEFAULT_COLLECTION", "DEFAULT_DATABASE", "POLL_INTERVAL_S", "MongoOptions", "parse_url", "split_url"]
