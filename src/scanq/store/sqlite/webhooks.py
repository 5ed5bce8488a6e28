"""SQLite: webhook endpoints and deliveries (``Store`` rule 11).

``Webhooks`` is mixed into ``SQLiteStore``. Writes join the writer's batches, reads go to
the reader threads. ``dispatch_events`` fans a page of the event log out to deliveries in
one statement (``INSERT … SELECT`` joining the page with the endpoints of each event's
tenant, and only for a callback endpoint (no url) a look-up of the event's scan by its
primary key, for its ``callback_url``; the primary key (endpoint_id, seq) makes a repeat a no-op) and moves
the cursor in the same transaction; with no endpoint at all it only moves the cursor. Claims walk
the partial index of pending deliveries by ``next_attempt_at``: the single writer is what
keeps two claimers from leasing the same delivery. Domain errors are raised on the event
loop, after the batch: an exception inside a write would fail the whole batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from scanq.exceptions import DeliveryNotFound, EndpointNotFound, ValidationError
from scanq.models import (
    Delivery,
    DeliveryJob,
    DeliveryResult,
    DeliveryStatus,
    EventType,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.delivery_rules import answers, first_results
from scanq.store.sql_rules import literal
from scanq.store.sqlite.events import DISPATCH_CURSOR, event_seq, note_seen_head
from scanq.store.sqlite.finished import IS_LEADER
from scanq.store.sqlite.statements import EVENTS_HEAD
from scanq.store.sqlite.webhook_rows import (
    DELIVERY_COLUMNS,
    ENDPOINT_COLUMNS,
    NEXT_ATTEMPT_AT,
    delivery_from_row,
    endpoint_from_row,
    endpoint_row,
    results_json,
)

if TYPE_CHECKING:
    from scanq.store.sqlite.writer import Apply

T = TypeVar("T")

_OF_TENANT = "endpoint_id = :endpoint_id AND (:tenant IS NULL OR tenant = :tenant)"
INSERT_ENDPOINT = f"INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
GET_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {_OF_TENANT}"
LIST_ENDPOINTS = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, endpoint_id"
LIST_ENDPOINTS_OF_TENANT = (
    f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints INDEXED BY webhook_endpoints_by_tenant"
    " WHERE tenant = :tenant ORDER BY created_at, endpoint_id"
)
DELETE_ENDPOINT = f"DELETE FROM webhook_endpoints WHERE {_OF_TENANT} RETURNING endpoint_id"
DELETE_ENDPOINT_DELIVERIES = "DELETE FROM webhook_deliveries WHERE endpoint_id = :endpoint_id"
ROTATE_SECRET = f"""
UPDATE webhook_endpoints
SET previous_secret = secret, previous_secret_until = :until, secret = :secret, updated_at = :now
WHERE {_OF_TENANT}
RETURNING {ENDPOINT_COLUMNS}
"""
ENDPOINTS_BY_ID = (
    f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id IN (SELECT value FROM json_each(?))"
)

# -- dispatch -------------------------------------------------------------------------------------

# The page of the log the dispatcher passes: how many events after the cursor (at most :limit) and the last.
DISPATCH_PAGE = (
    "SELECT count(*), max(seq) FROM (SELECT seq FROM scan_events WHERE seq > :after ORDER BY seq LIMIT :limit)"
)
HAS_ENDPOINTS = "SELECT EXISTS (SELECT 1 FROM webhook_endpoints)"
_EVENT_TYPE = "CASE event.status {} END".format(
    " ".join(f"WHEN {literal(status)} THEN {literal(EventType.of(status))}" for status in ScanStatus)
)
# A callback endpoint's delivery goes to its scan's callback_url: a probe of the scans' primary key, made only
# for an endpoint without a url (the OR and the CASE stop before it for every other endpoint).
_CALLBACK_URL = "SELECT scan.callback_url FROM scans AS scan WHERE scan.scan_id = event.scan_id"
DISPATCH = f"""
INSERT INTO webhook_deliveries (endpoint_id, seq, scan_id, tenant, event_status, event_attempt, event_at,
    status, attempts, created_at, next_attempt_at, url)
SELECT endpoint.endpoint_id, event.seq, event.scan_id, event.tenant, event.status, event.attempt, event.at,
    'pending', 0, :now, :now, CASE WHEN endpoint.url IS NULL THEN ({_CALLBACK_URL}) END
FROM scan_events AS event
JOIN webhook_endpoints AS endpoint INDEXED BY webhook_endpoints_by_tenant ON endpoint.tenant = event.tenant
WHERE event.seq > :after AND event.seq <= :last AND endpoint.created_at <= event.at
    AND {_EVENT_TYPE} IN (SELECT value FROM json_each(endpoint.event_types))
    AND (endpoint.url IS NOT NULL OR ({_CALLBACK_URL}) IS NOT NULL)
ON CONFLICT (endpoint_id, seq) DO NOTHING
"""
SET_DISPATCH_CURSOR = (
    "INSERT INTO webhook_cursor (one, seq) VALUES (1, :seq) ON CONFLICT (one) DO UPDATE SET seq = excluded.seq"
)

# -- deliveries -----------------------------------------------------------------------------------

# Earliest due first, then event order. In-flight deliveries (a live lease) are in the index range too;
# the lease column in the index skips them without a table lookup (at most a batch per delivering worker).
CLAIM_DELIVERIES = f"""
UPDATE webhook_deliveries SET lease_owner = :worker, lease_expires_at = :expires
WHERE (endpoint_id, seq) IN (
    SELECT endpoint_id, seq FROM webhook_deliveries INDEXED BY webhook_deliveries_due
    WHERE status = 'pending' AND next_attempt_at <= :now AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    ORDER BY next_attempt_at, seq, endpoint_id LIMIT :limit)
RETURNING {DELIVERY_COLUMNS}
"""
# Fenced by the lease: only a pending delivery still leased to the reporting worker changes.
RECORD_DELIVERIES = """
WITH given(endpoint_id, seq, worker, outcome, code, error, retry_at) AS (
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6
    FROM json_each(:results))
UPDATE webhook_deliveries SET
    attempts = attempts + 1, last_attempt_at = :now, last_status_code = given.code, last_error = given.error,
    lease_owner = NULL, lease_expires_at = NULL,
    status = CASE given.outcome WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed' ELSE 'pending' END,
    delivered_at = CASE given.outcome WHEN 'delivered' THEN :now ELSE delivered_at END,
    next_attempt_at = CASE given.outcome WHEN 'retry' THEN max(coalesce(given.retry_at, :now), :now)
        ELSE next_attempt_at END
FROM given
WHERE webhook_deliveries.endpoint_id = given.endpoint_id AND webhook_deliveries.seq = given.seq
    AND webhook_deliveries.status = 'pending' AND webhook_deliveries.lease_owner = given.worker
RETURNING webhook_deliveries.endpoint_id, webhook_deliveries.seq
"""
LIST_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
WHERE endpoint_id = :endpoint_id AND (:status IS NULL OR status = :status)
ORDER BY seq DESC LIMIT :limit
"""
RETRY_DELIVERY = f"""
UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = :now, lease_owner = NULL, lease_expires_at = NULL
WHERE endpoint_id = :endpoint_id AND seq = :seq
RETURNING {DELIVERY_COLUMNS}
"""
HAS_ENDPOINT = f"SELECT 1 FROM webhook_endpoints WHERE {_OF_TENANT}"
# The oldest ended deliveries (their last attempt before :before): a range of the partial index.
PRUNE_DELIVERIES = """
DELETE FROM webhook_deliveries WHERE (endpoint_id, seq) IN (
    SELECT endpoint_id, seq FROM webhook_deliveries INDEXED BY webhook_deliveries_ended
    WHERE status <> 'pending' AND last_attempt_at < :before
    ORDER BY last_attempt_at LIMIT :limit)
RETURNING 1
"""

_NO_ENDPOINT = object()  # a write's answer: the endpoint is unknown (raised on the loop)


class Webhooks:
    """The webhook operations of the ``Store`` contract (see ``store.base``), on SQLite."""

    if TYPE_CHECKING:
        path: Path

        async def _write(self, apply: Apply[T]) -> T: ...

        async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- endpoints ----------------------------------------------------------------------------------

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        row = endpoint_row(endpoint)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[bool, bool]:
            try:
                conn.execute(INSERT_ENDPOINT, row)
            except sqlite3.IntegrityError:
                return False, False  # one failed statement undoes only itself
            return True, False

        if not await self._write(apply):
            raise ValidationError(f"a webhook endpoint with id {endpoint.endpoint_id!r} exists already")

    async def get_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> WebhookEndpoint:
        params = {"endpoint_id": endpoint_id, "tenant": tenant}
        row = await self._read(lambda conn: conn.execute(GET_ENDPOINT, params).fetchone())
        if row is None:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_row(row)

    async def list_endpoints(self, *, tenant: str | None = None) -> list[WebhookEndpoint]:
        def query(conn: sqlite3.Connection) -> list[Any]:
            if tenant is None:
                return conn.execute(LIST_ENDPOINTS).fetchall()
            return conn.execute(LIST_ENDPOINTS_OF_TENANT, {"tenant": tenant}).fetchall()

        return [endpoint_from_row(row) for row in await self._read(query)]

    async def delete_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> None:
        params = {"endpoint_id": endpoint_id, "tenant": tenant}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[bool, bool]:
            if conn.execute(DELETE_ENDPOINT, params).fetchone() is None:
                return False, False
            conn.execute(DELETE_ENDPOINT_DELIVERIES, params)
            return True, False

        if not await self._write(apply):
            raise EndpointNotFound(endpoint_id)

    async def rotate_endpoint_secret(
        self, *, endpoint_id: str, secret: str, previous_until: datetime, tenant: str | None = None
    ) -> WebhookEndpoint:
        params = {"endpoint_id": endpoint_id, "tenant": tenant, "secret": secret, "until": previous_until.timestamp()}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[Any, bool]:
            return conn.execute(ROTATE_SECRET, {**params, "now": now}).fetchone(), False

        row = await self._write(apply)
        if row is None:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_row(row)

    # -- dispatch -----------------------------------------------------------------------------------

    async def dispatch_events(self, *, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        limit = max(1, min(limit, MAX_PAGE_SIZE))

        def apply(conn: sqlite3.Connection, now: float) -> tuple[tuple[int, int | None], bool]:
            # In the writer's transaction: the role cannot change hands between this check and the cursor's move.
            if conn.execute(IS_LEADER, {"role": WEBHOOK_ROLE, "owner": owner, "now": now}).fetchone() is None:
                return (0, None), False
            after = conn.execute(DISPATCH_CURSOR).fetchone()[0]
            count, last = conn.execute(DISPATCH_PAGE, {"after": after, "limit": limit}).fetchone()
            if count:
                if conn.execute(HAS_ENDPOINTS).fetchone()[0]:
                    conn.execute(DISPATCH, {"after": after, "last": last, "now": now})
                conn.execute(SET_DISPATCH_CURSOR, {"seq": last})
            # How far the log has been read: the head when this page reached it, else the page's end.
            seen = last if count == limit else conn.execute(EVENTS_HEAD).fetchone()[0]
            return (count, seen), False

        count, seen = await self._write(apply)
        if seen is not None:
            note_seen_head(self.path, seen)
        return count

    # -- deliveries ---------------------------------------------------------------------------------

    async def claim_deliveries(self, *, worker_id: str, limit: int, lease_s: float) -> list[DeliveryJob]:
        if limit <= 0:
            return []

        def apply(conn: sqlite3.Connection, now: float) -> tuple[tuple[list[Any], list[Any]], bool]:
            params = {"worker": worker_id, "expires": now + lease_s, "now": now, "limit": limit}
            rows = conn.execute(CLAIM_DELIVERIES, params).fetchall()
            if not rows:
                return ([], []), False
            ids = msgspec.json.encode(sorted({row[0] for row in rows})).decode()
            return (rows, conn.execute(ENDPOINTS_BY_ID, (ids,)).fetchall()), False

        rows, endpoint_rows = await self._write(apply)
        endpoints = {row[0]: endpoint_from_row(row) for row in endpoint_rows}
        rows.sort(key=lambda row: (row[NEXT_ATTEMPT_AT], row[1], row[0]))  # claim order: RETURNING has none
        return [
            DeliveryJob(delivery=delivery_from_row(row), endpoint=endpoints[row[0]], worker_id=worker_id)
            for row in rows
            if row[0] in endpoints  # (deleting an endpoint deletes its deliveries in the same write)
        ]

    async def record_deliveries(self, *, results: Sequence[DeliveryResult]) -> list[bool]:
        # The first result per (endpoint, event, worker) only (``delivery_rules``). At most one worker holds a
        # lease, so each worker's results go in one statement of their own (usually one worker per call).
        firsts = first_results(results, position=event_seq)
        by_worker: dict[str, list[tuple[DeliveryResult, int]]] = {}
        for (_, seq, worker), index in firsts.items():
            by_worker.setdefault(worker, []).append((results[index], seq))
        payloads = {worker: results_json(given) for worker, given in by_worker.items()}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[dict[str, set[tuple[str, int]]], bool]:
            applied: dict[str, set[tuple[str, int]]] = {}
            for worker, payload in payloads.items():
                rows = conn.execute(RECORD_DELIVERIES, {"results": payload, "now": now}).fetchall()
                applied[worker] = {(endpoint_id, seq) for endpoint_id, seq in rows}
            return applied, False

        applied = await self._write(apply) if payloads else {}
        done = {(endpoint_id, seq, worker) for worker, keys in applied.items() for endpoint_id, seq in keys}
        return answers(len(results), firsts, done)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str,
        tenant: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        params = {
            "endpoint_id": endpoint_id,
            "tenant": tenant,
            "status": None if status is None else str(status),
            "limit": max(1, min(limit, MAX_PAGE_SIZE)),
        }

        def query(conn: sqlite3.Connection) -> list[Any] | None:
            conn.execute("BEGIN")  # one snapshot: the endpoint and its deliveries
            try:
                if conn.execute(HAS_ENDPOINT, params).fetchone() is None:
                    return None
                return conn.execute(LIST_DELIVERIES, params).fetchall()
            finally:
                conn.execute("COMMIT")

        rows = await self._read(query)
        if rows is None:
            raise EndpointNotFound(endpoint_id)
        return [delivery_from_row(row) for row in rows]

    async def retry_delivery(self, *, endpoint_id: str, event_id: str, tenant: str | None = None) -> Delivery:
        seq = event_seq(event_id)
        params = {"endpoint_id": endpoint_id, "tenant": tenant, "seq": seq}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[Any, bool]:
            if conn.execute(HAS_ENDPOINT, params).fetchone() is None:
                return _NO_ENDPOINT, False
            if seq is None:
                return None, False
            return conn.execute(RETRY_DELIVERY, {**params, "now": now}).fetchone(), False

        row = await self._write(apply)
        if row is _NO_ENDPOINT:
            raise EndpointNotFound(endpoint_id)
        if row is None:
            raise DeliveryNotFound(endpoint_id, event_id)
        return delivery_from_row(row)

    async def prune_deliveries(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        params = {"before": before.timestamp(), "limit": max(1, min(limit, MAX_PAGE_SIZE))}

        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            # In the writer's transaction: the role cannot change hands before the delete.
            if conn.execute(IS_LEADER, {"role": RETENTION_ROLE, "owner": owner, "now": now}).fetchone() is None:
                return 0, False
            return len(conn.execute(PRUNE_DELIVERIES, params).fetchall()), False

        return await self._write(apply)


__all__ = ["Webhooks"]
