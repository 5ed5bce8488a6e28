"""The MongoDB backend (``mongodb://`` and ``mongodb+srv://`` URLs).

- ``store``: ``MongoStore``, the domain operations;
- ``options``: ``MongoOptions``, scanq's options of the URL query string;
- ``statements``: indexes, filters and updates, the lifecycle's transitions among them;
- ``schema``: creating the indexes, bringing an older collection up to date (tenants);
- ``rows``: a scan as a document and back;
- ``inserts``: the group commit's insert and the all-or-none batch;
- ``wakeup``: the change stream, or polling on a standalone server;
- ``legacy``: adopting the original system's documents;
- ``finished``: throughput counts, export, retention; ``accounts``: API tokens and tenant limits;
- ``eventlog``: events written in each scan's own update (its outbox), then numbered into the log
  (``outbox``); ``events``: reading, waiting for and pruning them; ``webhooks``: endpoints and deliveries;
- ``errors``: PyMongo errors as scanq errors.
"""

from __future__ import annotations

from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.legacy import LEGACY_OWNER
from scanq.store.mongo.options import MongoOptions, split_url
from scanq.store.mongo.store import MongoStore

__all__ = ["LEGACY_OWNER", "MongoOptions", "MongoStore", "split_url", "wrap_errors"]
