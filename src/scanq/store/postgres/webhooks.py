"""PostgreSQL: webhook endpoints and deliveries (``Store`` rule 11), the tables ``webhook_*``.

``Webhooks`` is mixed into ``PostgresStore`` like ``finished.FinishedScans``;
the statements are in ``sql/queries.sql``. Each operation is one statement (one
transaction): ``dispatch_events`` reads the settled events after the cursor,
inserts their deliveries (a callback endpoint's with their scan's ``callback_url``)
and moves the cursor in one write, fenced by the webhook role's row as ``prune``
is by the retention role's (and ``prune_deliveries`` by it); ``claim_deliveries``
leases due deliveries ``FOR UPDATE SKIP LOCKED``, as ``claim`` leases scans;
``record_deliveries`` is fenced by the lease, many results in one ``unnest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from scanq.exceptions import DeliveryNotFound, EndpointNotFound, StoreError, ValidationError
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
from scanq.store.postgres import statements
from scanq.store.postgres.rows import (
    ResultKey,
    delivery_from_row,
    endpoint_arguments,
    endpoint_from_row,
    job_from_row,
    parse_event_id,
    result_arrays,
)

# dispatch_events matches an event's status with the types endpoints subscribe to through these two arrays.
_STATUSES = [str(status) for status in ScanStatus]
_EVENT_TYPES = [str(EventType.of(status)) for status in ScanStatus]
# A position no event has (seq starts at 1): what an id this store never made is looked up as.
_NO_EVENT = (0, 0)


class Webhooks:
    """The webhook operations of the ``Store`` contract (see ``store.base``), on PostgreSQL."""

    if TYPE_CHECKING:

        async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        try:
            await self._fetch(statements.INSERT_ENDPOINT, *endpoint_arguments(endpoint))
        except StoreError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ValidationError(f"a webhook endpoint with id {endpoint.endpoint_id!r} exists already") from exc
            raise

    async def get_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> WebhookEndpoint:
        rows = await self._fetch(statements.SELECT_ENDPOINT, endpoint_id, tenant)
        if not rows:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_row(rows[0])

    async def list_endpoints(self, *, tenant: str | None = None) -> list[WebhookEndpoint]:
        if tenant is None:
            rows = await self._fetch(statements.LIST_ENDPOINTS)
        else:
            rows = await self._fetch(statements.LIST_TENANT_ENDPOINTS, tenant)
        return [endpoint_from_row(row) for row in rows]

    async def delete_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> None:
        if not await self._fetch(statements.DELETE_ENDPOINT, endpoint_id, tenant):
            raise EndpointNotFound(endpoint_id)

    async def rotate_endpoint_secret(
        self, *, endpoint_id: str, secret: str, previous_until: datetime, tenant: str | None = None
    ) -> WebhookEndpoint:
        rows = await self._fetch(statements.ROTATE_ENDPOINT_SECRET, endpoint_id, tenant, secret, previous_until)
        if not rows:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_row(rows[0])

    async def dispatch_events(self, *, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        if limit <= 0:
            return 0
        rows = await self._fetch(
            statements.DISPATCH_EVENTS, owner, WEBHOOK_ROLE, min(limit, MAX_PAGE_SIZE), _STATUSES, _EVENT_TYPES
        )
        return int(rows[0]["events"])

    async def claim_deliveries(self, *, worker_id: str, limit: int, lease_s: float) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        rows = await self._fetch(statements.CLAIM_DELIVERIES, worker_id, limit, float(lease_s))
        # RETURNING has no order: the earliest due first, then in event order.
        rows = sorted(
            rows, key=lambda row: (row["next_attempt_at"], row["event_txid"], row["event_seq"], row["endpoint_id"])
        )
        return [job_from_row(row, worker_id=worker_id) for row in rows]

    async def record_deliveries(self, *, results: Sequence[DeliveryResult]) -> list[bool]:
        firsts = first_results(results, position=parse_event_id)  # the first per (endpoint, event, worker)
        ordered = [(key, results[index]) for key, index in sorted(firsts.items())]  # one lock order for all batches
        applied: set[ResultKey] = set()
        if ordered:
            rows = await self._fetch(statements.RECORD_DELIVERIES, *result_arrays(ordered))
            applied = {
                (row["endpoint_id"], (int(row["event_txid"]), int(row["event_seq"])), row["worker_id"]) for row in rows
            }
        return answers(len(results), firsts, applied)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str,
        tenant: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        wanted = None if status is None else str(status)
        rows = await self._fetch(
            statements.LIST_DELIVERIES, endpoint_id, tenant, wanted, max(1, min(limit, MAX_PAGE_SIZE))
        )
        if not rows:
            raise EndpointNotFound(endpoint_id)
        return [delivery_from_row(row) for row in rows if row["endpoint_id"] is not None]

    async def retry_delivery(self, *, endpoint_id: str, event_id: str, tenant: str | None = None) -> Delivery:
        position = parse_event_id(event_id) or _NO_EVENT
        rows = await self._fetch(statements.RETRY_DELIVERY, endpoint_id, tenant, *position)
        if not rows:
            raise EndpointNotFound(endpoint_id)
        if rows[0]["endpoint_id"] is None:
            raise DeliveryNotFound(endpoint_id, event_id)
        return delivery_from_row(rows[0])

    async def prune_deliveries(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        rows = await self._fetch(statements.PRUNE_DELIVERIES, before, owner, RETENTION_ROLE, limit)
        return int(rows[0]["deliveries"])


__all__ = ["Webhooks"]
