"""Events and webhooks in the in-process store: the event log (``Store`` rule 10) and its deliveries (rule 11).

The log is a list in event order; an event's id is its sequence number in decimal. Every
method runs to completion without awaiting, so every event is settled as soon as it is written.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from scanq.exceptions import DeliveryNotFound, EndpointNotFound, ValidationError
from scanq.models import (
    Delivery,
    DeliveryJob,
    DeliveryOutcome,
    DeliveryResult,
    DeliveryStatus,
    Scan,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.store.base import MAX_PAGE_SIZE, RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.delivery_rules import answers, first_results

_EVENT_ID = re.compile(r"[0-9]{1,19}")
_FINISHED_DELIVERIES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class _DeliveryRow:
    """A stored delivery: the record callers see, its event's position in the log, and its lease."""

    delivery: Delivery
    seq: int
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@dataclasses.dataclass
class EventLog:
    """The events and webhook state behind one ``memory://NAME`` (a part of the store's shared state)."""

    events: list[ScanEvent] = dataclasses.field(default_factory=list)  # in event order
    seqs: list[int] = dataclasses.field(default_factory=list)  # the events' sequence numbers, for bisect
    last_seq: int = 0
    waiters: set[asyncio.Event] = dataclasses.field(default_factory=set)
    endpoints: dict[str, WebhookEndpoint] = dataclasses.field(default_factory=dict)
    deliveries: dict[tuple[str, str], _DeliveryRow] = dataclasses.field(default_factory=dict)  # (endpoint, event)
    cursor: int | None = None  # the last event dispatched (None: none yet)

    def append(self, scan: Scan) -> None:
        """Record the transition that just made ``scan`` what it is, and wake every ``wait_for_events``."""
        self.last_seq += 1
        event = ScanEvent(
            event_id=str(self.last_seq),
            scan_id=scan.scan_id,
            tenant=scan.tenant,
            status=scan.status,
            attempt=scan.attempt,
            at=scan.updated_at,
        )
        self.events.append(event)
        self.seqs.append(self.last_seq)
        for waiter in self.waiters:
            waiter.set()

    def after(self, seq: int) -> int:
        """The index of the first kept event after ``seq``."""
        return bisect.bisect_right(self.seqs, seq)


class MemoryEvents:
    """The event and webhook operations of ``MemoryStore``, over the ``EventLog`` it shares per URL."""

    _log: EventLog
    _scans: dict[str, Scan]  # the store's scans: a callback delivery reads its scan's callback_url
    _leaders: dict[str, tuple[str, datetime]]  # role → (owner, until), as ``lead`` keeps it
    _events_woken: asyncio.Event

    # -- events (rule 10) ----------------------------------------------------------------------------

    # -- roles (``lead``): the retention pruner and the webhook dispatcher hold one each ------------

    async def lead(self, *, role: str, owner: str, term_s: float) -> bool:
        now = datetime.now(UTC)
        holder = self._leaders.get(role)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._leaders[role] = (owner, now + timedelta(seconds=term_s))
        return True

    async def resign(self, *, role: str, owner: str) -> None:
        if self._leaders.get(role, ("", None))[0] == owner:
            del self._leaders[role]

    # -- events (rule 10) ------------------------------------------------------------------------

    async def read_events(
        self,
        *,
        after: str | None = None,
        tenant: str | None = None,
        scan_id: str | None = None,
        statuses: frozenset[ScanStatus] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[ScanEvent]:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        start = 0 if after is None else self._log.after(_parse_event_id(after))
        picked: list[ScanEvent] = []
        for event in self._log.events[start:]:
            if (
                (tenant is None or event.tenant == tenant)
                and (scan_id is None or event.scan_id == scan_id)
                and (statuses is None or event.status in statuses)
            ):
                picked.append(event)
                if len(picked) >= limit:
                    break
        return picked

    async def events_head(self) -> str:
        return str(self._log.last_seq)

    async def wait_for_events(self, *, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._events_woken.wait(), timeout_s)
        except TimeoutError:
            return
        finally:
            self._events_woken.clear()

    async def prune_events(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        log = self._log
        if not self._holds(RETENTION_ROLE, owner) or log.cursor is None:
            return 0
        passed = log.after(log.cursor)  # the dispatcher has not passed the events from this index on
        old = (index for index in range(passed) if log.events[index].at < before)
        doomed = set(itertools.islice(old, max(1, min(limit, MAX_PAGE_SIZE))))
        if doomed:
            log.events = [event for index, event in enumerate(log.events) if index not in doomed]
            log.seqs = [seq for index, seq in enumerate(log.seqs) if index not in doomed]
        return len(doomed)  # deliveries carry their event: they stay (prune_deliveries)

    # -- webhooks (rule 11) --------------------------------------------------------------------------

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        if endpoint.endpoint_id in self._log.endpoints:
            raise ValidationError(f"a webhook endpoint with id {endpoint.endpoint_id!r} exists already")
        self._log.endpoints[endpoint.endpoint_id] = dataclasses.replace(
            endpoint, event_types=frozenset(endpoint.event_types)
        )

    async def get_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> WebhookEndpoint:
        endpoint = self._log.endpoints.get(endpoint_id)
        if endpoint is None or (tenant is not None and endpoint.tenant != tenant):
            raise EndpointNotFound(endpoint_id)
        return endpoint

    async def list_endpoints(self, *, tenant: str | None = None) -> list[WebhookEndpoint]:
        endpoints = [e for e in self._log.endpoints.values() if tenant is None or e.tenant == tenant]
        return sorted(endpoints, key=lambda e: (e.created_at, e.endpoint_id))

    async def delete_endpoint(self, *, endpoint_id: str, tenant: str | None = None) -> None:
        await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        del self._log.endpoints[endpoint_id]
        for key in [key for key in self._log.deliveries if key[0] == endpoint_id]:
            del self._log.deliveries[key]

    async def rotate_endpoint_secret(
        self, *, endpoint_id: str, secret: str, previous_until: datetime, tenant: str | None = None
    ) -> WebhookEndpoint:
        endpoint = await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        rotated = dataclasses.replace(
            endpoint,
            secret=secret,
            previous_secret=endpoint.secret,
            previous_secret_until=previous_until,
            updated_at=_now(),
        )
        self._log.endpoints[endpoint_id] = rotated
        return rotated

    async def dispatch_events(self, *, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        log = self._log
        if not self._holds(WEBHOOK_ROLE, owner):
            return 0
        start = 0 if log.cursor is None else log.after(log.cursor)
        batch = log.events[start : start + max(1, min(limit, MAX_PAGE_SIZE))]
        if not batch:
            return 0
        now = _now()
        by_tenant: dict[str, list[WebhookEndpoint]] = {}
        for endpoint in log.endpoints.values():
            by_tenant.setdefault(endpoint.tenant, []).append(endpoint)
        for seq, event in zip(log.seqs[start:], batch, strict=False):
            for endpoint in by_tenant.get(event.tenant, ()):
                key = (endpoint.endpoint_id, event.event_id)
                if event.type not in endpoint.event_types or endpoint.created_at > event.at or key in log.deliveries:
                    continue
                url = None
                if endpoint.url is None:  # the callback endpoint: only to the scan's own callback_url
                    scan = self._scans.get(event.scan_id)
                    url = None if scan is None else scan.callback_url
                    if url is None:
                        continue
                delivery = Delivery(
                    endpoint_id=endpoint.endpoint_id,
                    event=event,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    url=url,
                )
                log.deliveries[key] = _DeliveryRow(delivery=delivery, seq=seq)
        log.cursor = log.seqs[start + len(batch) - 1]
        return len(batch)

    async def claim_deliveries(self, *, worker_id: str, limit: int, lease_s: float) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        now = _now()
        due = [
            row
            for row in self._log.deliveries.values()
            if row.delivery.status == DeliveryStatus.PENDING
            and row.delivery.next_attempt_at <= now
            and (row.lease_expires_at is None or row.lease_expires_at <= now)
        ]
        due.sort(key=lambda row: (row.delivery.next_attempt_at, row.seq, row.delivery.endpoint_id))
        jobs: list[DeliveryJob] = []
        for row in due[:limit]:
            row.lease_owner = worker_id
            row.lease_expires_at = now + timedelta(seconds=lease_s)
            endpoint = self._log.endpoints[row.delivery.endpoint_id]
            jobs.append(DeliveryJob(delivery=row.delivery, endpoint=endpoint, worker_id=worker_id))
        return jobs

    async def record_deliveries(self, *, results: Sequence[DeliveryResult]) -> list[bool]:
        now = _now()
        firsts = first_results(results, position=lambda event_id: event_id)
        applied: set[tuple[str, str, str]] = set()
        for key, index in firsts.items():
            result = results[index]
            row = self._log.deliveries.get((result.endpoint_id, result.event_id))
            if row is None or row.delivery.status != DeliveryStatus.PENDING or row.lease_owner != result.worker_id:
                continue
            delivery = dataclasses.replace(
                row.delivery,
                attempts=row.delivery.attempts + 1,
                last_attempt_at=now,
                last_status_code=result.status_code,
                last_error=result.error,
            )
            if result.outcome is DeliveryOutcome.DELIVERED:
                delivery = dataclasses.replace(delivery, status=DeliveryStatus.DELIVERED, delivered_at=now)
            elif result.outcome is DeliveryOutcome.FAILED:
                delivery = dataclasses.replace(delivery, status=DeliveryStatus.FAILED)
            else:
                retry_at = now if result.retry_at is None else max(result.retry_at, now)
                delivery = dataclasses.replace(delivery, next_attempt_at=retry_at)
            row.delivery, row.lease_owner, row.lease_expires_at = delivery, None, None
            applied.add(key)
        return answers(len(results), firsts, applied)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str,
        tenant: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        rows = [
            row
            for (endpoint, _), row in self._log.deliveries.items()
            if endpoint == endpoint_id and (status is None or row.delivery.status == status)
        ]
        rows.sort(key=lambda row: row.seq, reverse=True)
        return [row.delivery for row in rows[: max(1, min(limit, MAX_PAGE_SIZE))]]

    async def retry_delivery(self, *, endpoint_id: str, event_id: str, tenant: str | None = None) -> Delivery:
        await self.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
        row = self._log.deliveries.get((endpoint_id, event_id))
        if row is None:
            raise DeliveryNotFound(endpoint_id, event_id)
        row.delivery = dataclasses.replace(row.delivery, status=DeliveryStatus.PENDING, next_attempt_at=_now())
        row.lease_owner, row.lease_expires_at = None, None
        return row.delivery

    async def prune_deliveries(self, *, before: datetime, owner: str, limit: int = MAX_PAGE_SIZE) -> int:
        if not self._holds(RETENTION_ROLE, owner):
            return 0
        ended = sorted(
            (row.delivery.last_attempt_at, key)
            for key, row in self._log.deliveries.items()
            if row.delivery.status in _FINISHED_DELIVERIES
            and row.delivery.last_attempt_at is not None
            and row.delivery.last_attempt_at < before
        )[: max(1, min(limit, MAX_PAGE_SIZE))]
        for _, key in ended:
            del self._log.deliveries[key]
        return len(ended)

    def _holds(self, role: str, owner: str) -> bool:
        holder = self._leaders.get(role)
        return holder is not None and holder[0] == owner and holder[1] > _now()


def _parse_event_id(event_id: str) -> int:
    """The sequence number an event id of this store names; ``ValidationError`` for anything else."""
    if _EVENT_ID.fullmatch(event_id) is None:
        raise ValidationError(f"invalid event id {event_id!r}")
    return int(event_id)


__all__ = ["EventLog", "MemoryEvents"]
