"""An in-process store: the reference semantics of the Store Protocol, for unit tests.

Nothing is durable and nothing is shared between processes; it runs the same
contract suite as the real backends so it cannot drift from them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from scanq import lifecycle
from scanq.exceptions import ScanFinished, ScanNotFound, StoreUnavailable, ValidationError
from scanq.lifecycle import CancelAction
from scanq.models import (
    Actor,
    ApiToken,
    Attempt,
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Page,
    Scan,
    ScanStatus,
    Stats,
    TenantLimits,
)
from scanq.store.base import (
    MAX_PAGE_SIZE,
    RETENTION_ROLE,
    Store,
    accepted_scan,
    check_after,
    check_finished_status,
    count_steps,
    decode_cursor,
    encode_cursor,
    finished_buckets,
)
from scanq.store.memory_accounts import MemoryAccounts
from scanq.store.memory_events import EventLog, MemoryEvents


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class _Shared:
    """The state behind one ``memory://NAME``: every store opened on that URL in this process sees it."""

    scans: dict[str, Scan] = dataclasses.field(default_factory=dict)
    by_key: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (tenant, key) → scan id
    tokens: dict[str, ApiToken] = dataclasses.field(default_factory=dict)
    limits: dict[str, TenantLimits] = dataclasses.field(default_factory=dict)
    fair_keys: dict[str, float] = dataclasses.field(default_factory=dict)  # scan id → its fair key (rule 9)
    clocks: dict[str, float] = dataclasses.field(default_factory=dict)  # tenant → its last fair key
    waiters: set[asyncio.Event] = dataclasses.field(default_factory=set)
    leaders: dict[str, tuple[str, datetime]] = dataclasses.field(default_factory=dict)  # role → (owner, until)
    log: EventLog = dataclasses.field(default_factory=EventLog)  # events and webhooks (rules 10, 11)

    def notify(self) -> None:
        for event in self.waiters:
            event.set()


# Like SQLite's named in-memory databases: stores opened on the same URL share one state,
# so tests can race several "workers" against one queue.
_SHARED: dict[str, _Shared] = {}


class MemoryStore(MemoryAccounts, MemoryEvents, Store):
    """A dict of scans guarded by the event loop (every method runs to completion without awaiting).

    Args:
        url: ``memory://NAME``; stores opened on the same URL in one process share their scans.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._shared = _SHARED.setdefault(url, _Shared())
        self._scans = self._shared.scans
        self._by_key = self._shared.by_key
        self._tokens = self._shared.tokens
        self._limits = self._shared.limits
        self._log = self._shared.log
        self._leaders = self._shared.leaders
        self._work = asyncio.Event()
        self._shared.waiters.add(self._work)
        self._events_woken = asyncio.Event()
        self._log.waiters.add(self._events_woken)
        self._is_open = False

    async def open(self) -> None:
        self._is_open = True

    async def aclose(self) -> None:
        self._is_open = False
        self._shared.waiters.discard(self._work)
        self._log.waiters.discard(self._events_woken)

    async def ping(self) -> None:
        if not self._is_open:
            raise StoreUnavailable("the memory store is not open")

    async def create(self, *, scan: NewScan) -> Created:
        return (await self.create_many(scans=[scan]))[0]

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        now = _now()
        staged: dict[str, Scan] = {}
        fair_keys: dict[str, float] = {}
        clocks = dict(self._shared.clocks)  # applied only when the whole batch is
        keys: dict[tuple[str, str], str] = {}
        answers: list[Created] = []
        for new in scans:
            key = None if new.idempotency_key is None else (new.tenant, new.idempotency_key)
            existing_id = (keys.get(key) or self._by_key.get(key)) if key is not None else None
            if existing_id is not None:
                answers.append(Created(scan=staged.get(existing_id) or self._scans[existing_id], is_new=False))
                continue
            if new.scan_id in self._scans or new.scan_id in staged:
                raise ValidationError(f"duplicate scan id {new.scan_id}")
            scan = accepted_scan(new, updated_at=now)
            staged[scan.scan_id] = scan
            fair_keys[scan.scan_id] = self._next_fair_key(new.tenant, now, clocks)
            if key is not None:
                keys[key] = scan.scan_id
            answers.append(Created(scan=scan, is_new=True))
        self._scans.update(staged)
        for scan in staged.values():  # in the batch's order (rule 10: Accepted, not for a replay)
            self._log.append(scan)
        self._by_key.update(keys)
        self._shared.fair_keys.update(fair_keys)
        self._shared.clocks.update(clocks)
        if staged:
            self._shared.notify()
        return answers

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        scan = self._scans.get(scan_id)
        if scan is None or (tenant is not None and scan.tenant != tenant):
            raise ScanNotFound(scan_id)
        return scan

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = decode_cursor(cursor) if cursor else None
        ids = sorted(self._scans, reverse=True)
        picked: list[Scan] = []
        for scan_id in ids:
            if after is not None and scan_id >= after:
                continue
            scan = self._scans[scan_id]
            if (status is not None and scan.status != status) or (tenant is not None and scan.tenant != tenant):
                continue
            picked.append(scan)
            if len(picked) > limit:
                break
        has_more = len(picked) > limit
        picked = picked[:limit]
        return Page(scans=picked, next_cursor=encode_cursor(picked[-1].scan_id) if has_more else None)

    async def stats(self, *, tenant: str | None = None) -> Stats:
        counts = dict.fromkeys(ScanStatus, 0)
        oldest: datetime | None = None
        for scan in self._scans.values():
            if tenant is not None and scan.tenant != tenant:
                continue
            counts[scan.status] += 1
            if scan.status == ScanStatus.ACCEPTED and (oldest is None or scan.created_at < oldest):
                oldest = scan.created_at
        return Stats(counts=counts, oldest_accepted_at=oldest)

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        now = _now()
        ready = [s for s in self._scans.values() if s.status == ScanStatus.ACCEPTED and s.available_at <= now]
        fair_keys = self._shared.fair_keys
        ready.sort(key=lambda s: (-s.priority, fair_keys.get(s.scan_id, 0.0), s.scan_id))
        running: dict[str, int] = {}
        if max_per_target is not None:
            for other in self._scans.values():
                if other.status == ScanStatus.RUNNING and other.target_key is not None:
                    running[other.target_key] = running.get(other.target_key, 0) + 1
        picked: list[Scan] = []
        for scan in ready:
            if len(picked) >= limit:
                break
            if max_per_target is not None and scan.target_key is not None:
                if running.get(scan.target_key, 0) >= max_per_target:
                    continue  # over the cap: stays Accepted, the claim goes on
                running[scan.target_key] = running.get(scan.target_key, 0) + 1
            picked.append(scan)
        claimed: list[Scan] = []
        for scan in picked:
            attempt = scan.attempt + 1
            entry = Attempt(attempt=attempt, worker=worker_id, started_at=now)
            claimed.append(
                self._put(
                    scan,
                    is_transition=True,
                    status=ScanStatus.RUNNING,
                    attempt=attempt,
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    started_at=now,
                    updated_at=now,
                    history=(*scan.history, entry),
                )
            )
        return claimed

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        now = _now()
        lost: set[str] = set()
        cancels: set[str] = set()
        for lease in leases:
            scan = self._held(lease)
            if scan is None:
                lost.add(lease.scan_id)
                continue
            self._put(scan, lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
            if scan.cancel_requested:
                cancels.add(lease.scan_id)
        return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancels))

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        now = _now()
        applied: list[bool] = []
        for fin in finishes:
            scan = self._held(fin.lease)
            if scan is None:
                applied.append(False)
                continue
            transition = lifecycle.FINISH[fin.outcome]
            self._transit(scan, transition, now=now, error=fin.error, result=fin.result, retry_at=fin.retry_at)
            applied.append(True)
        return applied

    async def release(self, *, leases: Sequence[Lease]) -> int:
        now = _now()
        released = 0
        for lease in leases:
            scan = self._held(lease)
            if scan is None:
                continue
            released += 1
            self._transit(scan, lifecycle.choose(lifecycle.RELEASE, scan), now=now)
        return released

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        now = _now()
        expired = [
            s
            for s in self._scans.values()
            if s.status == ScanStatus.RUNNING and s.lease_expires_at is not None and s.lease_expires_at <= now
        ][:limit]
        for scan in expired:
            self._transit(scan, lifecycle.choose(lifecycle.LEASE_EXPIRED, scan), now=now)
        return len(expired)

    async def cancel(self, *, scan_id: str, tenant: str | None = None, by: Actor | None = None) -> Scan:
        scan = await self.get(scan_id=scan_id, tenant=tenant)
        now = _now()
        action = lifecycle.cancel_action(scan.status)
        if action is CancelAction.REFUSE:
            raise ScanFinished(scan_id, scan.status)
        if action is CancelAction.CANCEL_NOW:
            return self._put(
                scan, is_transition=True, status=ScanStatus.CANCELLED, finished_at=now, updated_at=now, cancelled_by=by
            )
        return self._put(scan, cancel_requested=True, updated_at=now, cancelled_by=by)  # no status change: no event

    async def wait_for_work(self, *, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._work.wait(), timeout_s)
        except TimeoutError:
            return
        finally:
            self._work.clear()

    # -- finished scans: throughput, export, retention (``tenant``: added with tenants) --------------

    async def finished_counts(
        self, *, since: datetime, until: datetime, step_s: float, tenant: str | None = None
    ) -> list[tuple[datetime, dict[ScanStatus, int]]]:
        steps = count_steps(since=since, until=until, step_s=step_s)
        counts = [
            (math.floor((scan.finished_at - since).total_seconds() / step_s), scan.status, 1)
            for scan in self._scans.values()
            if scan.status.is_terminal
            and scan.finished_at is not None
            and since <= scan.finished_at < until
            and (tenant is None or scan.tenant == tenant)
        ]
        return finished_buckets(since=since, step_s=step_s, steps=steps, counts=counts)

    async def export_scans(
        self,
        *,
        status: ScanStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        tenant: str | None = None,
    ) -> list[Scan]:
        statuses = check_finished_status(status)
        after = check_after(after)
        picked = [
            scan
            for scan in self._scans.values()
            if scan.status in statuses
            and (after is None or scan.scan_id > after)
            and scan.finished_at is not None
            and (since is None or scan.finished_at >= since)
            and (until is None or scan.finished_at < until)
            and (tenant is None or scan.tenant == tenant)
        ]
        picked.sort(key=lambda scan: scan.scan_id)
        return picked[: max(1, min(limit, MAX_PAGE_SIZE))]

    async def prune(
        self,
        *,
        status: ScanStatus,
        finished_before: datetime,
        limit: int,
        owner: str,
        dry_run: bool = False,
        scan_ids: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> list[Scan]:
        check_finished_status(status)
        wanted = None if scan_ids is None else set(scan_ids)
        batch = sorted(
            (
                scan
                for scan in self._scans.values()
                if scan.status == status
                and scan.finished_at is not None
                and scan.finished_at < finished_before
                and (wanted is None or scan.scan_id in wanted)
                and (tenant is None or scan.tenant == tenant)
            ),
            key=lambda scan: (scan.finished_at, scan.scan_id),
        )[: max(1, min(limit, MAX_PAGE_SIZE))]
        if dry_run:
            return batch
        holder = self._shared.leaders.get(RETENTION_ROLE)
        if holder is None or holder[0] != owner or holder[1] <= _now():
            return []
        for scan in batch:
            del self._scans[scan.scan_id]
            self._shared.fair_keys.pop(scan.scan_id, None)
            if scan.idempotency_key is not None:
                self._by_key.pop((scan.tenant, scan.idempotency_key), None)
        return batch

    def _held(self, lease: Lease) -> Scan | None:
        scan = self._scans.get(lease.scan_id)
        if (
            scan is None
            or scan.status != ScanStatus.RUNNING
            or scan.lease_owner != lease.worker_id
            or scan.attempt != lease.attempt
        ):
            return None
        return scan

    def _transit(self, scan: Scan, transition: lifecycle.Transition, *, now: datetime, **given: Any) -> None:
        """Carry ``transition`` out on a held scan, record its event; wake waiters when it made the scan claimable."""
        self._scans[scan.scan_id] = done = lifecycle.apply(scan, transition, now=now, **given)
        self._log.append(done)
        if transition.status is ScanStatus.ACCEPTED:
            self._shared.notify()

    def _put(self, scan: Scan, *, is_transition: bool = False, **changes: object) -> Scan:
        """Store ``scan`` with ``changes``; a status transition (``is_transition``) records its event (rule 10)."""
        updated = dataclasses.replace(scan, **changes)  # type: ignore[arg-type]
        self._scans[scan.scan_id] = updated
        if is_transition:
            self._log.append(updated)
        return updated
