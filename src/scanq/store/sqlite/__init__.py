"""The SQLite backend (``sqlite:///path/scanq.db``): one file in WAL mode, shared by every scanq process on a machine.

Modules, named alike across the backends:

- ``store``: ``SQLiteStore``, the domain operations;
- ``finished``: the operations on finished scans (throughput counts, export, retention);
- ``accounts``: API tokens and tenant limits;
- ``events``: the scan event log (written by triggers, read, waited for, pruned);
- ``webhooks``: webhook endpoints, the dispatch of events to deliveries, their claims and outcomes;
- ``webhook_rows``: rows <-> models for the webhook tables;
- ``options``: ``SQLiteOptions`` from the URL's query string, and the file it names;
- ``statements``: the SQL (transitions rendered from ``scanq.lifecycle``);
- ``schema``: numbered migrations, ``PRAGMA user_version``, WAL;
- ``rows``: rows <-> models;
- ``writer``: the single writer thread and its group commit;
- ``readers``: the reads (short ones on the event loop's connection, the rest on reader threads);
- ``wakeup``: the ``PRAGMA data_version`` watcher that wakes ``wait_for_work`` and ``wait_for_events``;
- ``connection``: opening connections, the write lock, error translation.
"""

from scanq.store.sqlite.connection import wrap_errors
from scanq.store.sqlite.options import SQLiteOptions, sqlite_path
from scanq.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from scanq.store.sqlite.store import SQLiteStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteOptions", "SQLiteStore", "sqlite_path", "wrap_errors"]
