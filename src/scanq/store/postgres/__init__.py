"""The PostgreSQL store: many ingest, status and worker processes on many machines, one database.

Every hot operation is one set-based statement (one round trip, one implicit
transaction): a claim selects ``FOR UPDATE SKIP LOCKED`` and marks Running in
the same statement, fenced updates of many scans go through ``unnest`` arrays,
and concurrent ``create`` calls of one process are group-committed into one
multi-row insert. asyncpg prepares and caches each statement per connection.

Wake-up is ``LISTEN``/``NOTIFY``: statements that make work claimable call
``pg_notify``, and ``wait_for_work`` listens on a dedicated connection that
reconnects by itself; a lost notification only delays work until the fallback
poll. Time is the server's: ``now()`` for leases, ``available_at`` and history.

Every status transition inserts its scan events in its own statement (rule 10)
and notifies the events channel, which ``wait_for_events`` hears on the same
connection. The log is ordered by (transaction id, sequence) and read only up
to the oldest running transaction, so a reader never passes an event that has
not committed yet (``events``). Webhook deliveries are dispatched, claimed and
recorded one statement each (``webhooks``).

Modules, named alike across backends:

- ``store``: ``PostgresStore``, the domain operations;
- ``finished``: the operations on finished scans (throughput counts, export, retention);
- ``accounts``: API tokens and tenant limits;
- ``events``: the scan event log, read (settled events only) and pruned;
- ``webhooks``: webhook endpoints, and the deliveries of events to them;
- ``options``: ``PostgresOptions``, scanq's query parameters of the URL;
- ``statements``: the named statements of ``sql/queries.sql``, lifecycle rules filled in;
- ``schema``: the numbered migrations (``sql/NNNN_name.sql``) and the durability check;
- ``rows``: records to models and models to statement arguments;
- ``wakeup``: the ``LISTEN`` connection (work and events channels);
- ``connection``: connections, the pool, driver errors translated.

Deployment notes: ``docs/postgres.md``.
"""

from __future__ import annotations

from scanq.store.postgres.connection import wrap_errors
from scanq.store.postgres.options import PostgresOptions
from scanq.store.postgres.schema import MIGRATION_LOCK_KEY, migrate, migrations
from scanq.store.postgres.statements import (
    CLAIM,
    COUNT_FOLD_LOCK_KEY,
    EVENTS_CHANNEL,
    FOLD_COUNTS,
    LIST_STATUS,
    REQUEUE_EXPIRED,
    STATS,
    STATS_TENANT,
    WORK_CHANNEL,
)
from scanq.store.postgres.store import PostgresStore

__all__ = [
    "CLAIM",
    "COUNT_FOLD_LOCK_KEY",
    "EVENTS_CHANNEL",
    "FOLD_COUNTS",
    "LIST_STATUS",
    "MIGRATION_LOCK_KEY",
    "REQUEUE_EXPIRED",
    "STATS",
    "STATS_TENANT",
    "WORK_CHANNEL",
    "PostgresOptions",
    "PostgresStore",
    "migrate",
    "migrations",
    "wrap_errors",
]
