"""The scan service: the rules for submitting, cancelling and reading scans.

Every entry point (the HTTP services, the CLI) calls this; it calls the
``Store`` and never a driver. It applies the defaults from ``Settings``, checks
bounds, lets the scanner plugin validate and normalise the target, and
enforces idempotency (the same key with a different request is a conflict).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scanq.config import Settings

# The cursor, page and throughput bounds are re-exported: entry points read bounds here.
from scanq.cursors import (
    MAX_PAGE_CURSOR_LENGTH,
    PAGE_CURSOR_PATTERN,
    decode_page_cursor,
    encode_page_cursor,
    filter_name,
)
from scanq.exceptions import (
    Forbidden,
    IdempotencyConflict,
    ScanFinished,
    ScanNotFound,
    UnknownScanner,
    ValidationError,
)
from scanq.ids import is_scan_id
from scanq.models import OPERATOR, Caller, Created, NewScan, Page, Scan, ScanStatus, Scope, TenantQueue
from scanq.preparation import Preparer
from scanq.quotas import QuotaGuard
from scanq.scanners import ScannerRegistry
from scanq.store.base import FINISHED_STATUSES, MAX_PAGE_SIZE, Store
from scanq.submissions import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_SUBMISSION,
    MAX_ATTEMPTS_LIMIT,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_OPTIONS_DEPTH,
    MAX_PRIORITY,
    MAX_SCANNER_NAME_LENGTH,
    MAX_TARGET_LENGTH,
    MIN_PRIORITY,
    CallbackGuard,
    Submission,
    SubmitRequest,
    check_idempotency_key,
    is_same_request,
    parse_status,
)
from scanq.throughput import (
    MAX_THROUGHPUT_BUCKETS,
    MAX_THROUGHPUT_WINDOW_S,
    MIN_THROUGHPUT_STEP_S,
    Throughput,
    check_throughput_bounds,
)

if TYPE_CHECKING:
    from scanq.metrics import ScanCounters

logger = logging.getLogger(__name__)

# /stats names at most this many tenants (the busiest) for an admin.
MAX_TENANT_QUEUES = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """Counts by status (every status present), how long the oldest Accepted scan has waited, and per tenant.

    ``tenants``: each tenant's waiting and running scans, busiest first (an admin without a tenant filter
    sees up to ``MAX_TENANT_QUEUES`` tenants; any other caller, or a filter, only that tenant).
    """

    counts: Mapping[ScanStatus, int]
    oldest_accepted_age_s: float | None
    tenants: Sequence[TenantQueue] = ()


class ScanService:
    """Submit, cancel and read scans, each on behalf of a ``Caller``.

    A caller acts on its own tenant's scans only (another tenant's scan is answered as an unknown id);
    an ``admin`` caller on every tenant's. Each operation needs its scope: ``submit``, ``read`` or
    ``cancel`` (``Forbidden`` otherwise, before anything is read or written). The default caller,
    ``OPERATOR``, is the one of a service without authentication and of the CLI.

    Args:
        store: an open store.
        scanners: the plugins that validate targets at submit time.
        settings: defaults (scanner, max_attempts) and limits (max_batch).
        counters: Prometheus counters of new scans and accepted cancels (None: count nothing).
        quotas: the tenants' quotas, checked before each submission (None: a ``QuotaGuard`` on ``store``).
        callbacks: checks a submission's ``callback_url`` and makes the tenant's callback endpoint
            (None: a ``callback_url`` is refused).
    """

    def __init__(
        self,
        store: Store,
        scanners: ScannerRegistry,
        settings: Settings,
        *,
        counters: ScanCounters | None = None,
        quotas: QuotaGuard | None = None,
        callbacks: CallbackGuard | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._counters = counters
        self._quotas = quotas or QuotaGuard(store)
        self._callbacks = callbacks
        self._preparer = Preparer(scanners=scanners, settings=settings, callbacks=callbacks)

    async def submit(
        self, submission: Submission, *, idempotency_key: str | None = None, caller: Caller = OPERATOR
    ) -> Created:
        """Validate and store one scan of the caller's tenant; ``is_new`` is False when ``idempotency_key`` matched.

        Raise ``Forbidden``, ``ValidationError``/``TargetRefused``/``UnknownScanner`` or ``QuotaExceeded``
        before writing anything, and ``IdempotencyConflict`` when the key was used for a different request
        (nothing is written then either). A replay is checked against the quotas like a new submission: a
        tenant over its limit gets 429 for it too, and the same key answers the stored scan once it is under.
        """
        require(caller, Scope.SUBMIT)
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        prepared: list[NewScan] = []
        await self._preparer.prepare(
            prepared, (submission,), idempotency_key=idempotency_key, now=datetime.now(UTC), caller=caller, checked={}
        )
        new = prepared[0]
        await self._quotas.admit(caller.tenant)
        if new.callback_url is not None and self._callbacks is not None:
            await self._callbacks.ensure_callback_endpoint(caller.tenant)
        created = await self._store.create(scan=new)
        if not created.is_new and not is_same_request(created.scan, new):
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"(scan {created.scan.scan_id})",
                scan_id=created.scan.scan_id,
            )
        if created.is_new and self._counters is not None:
            self._counters.record_submitted()
        return created

    async def submit_many(self, submissions: Sequence[Submission], *, caller: Caller = OPERATOR) -> list[Scan]:
        """Validate every submission, then store them all in one transaction: all or none.

        Raise ``Forbidden``, ``ValidationError`` (naming the item) for an empty or oversized batch or any
        invalid item, or ``QuotaExceeded`` when the whole batch would take the tenant over a quota.
        """
        require(caller, Scope.SUBMIT)
        if not submissions:
            raise ValidationError("a batch needs at least one scan")
        if len(submissions) > self._settings.max_batch:
            raise ValidationError(f"a batch holds at most {self._settings.max_batch} scans (got {len(submissions)})")
        now = datetime.now(UTC)
        prepared: list[NewScan] = []
        checked: dict[str, str] = {}  # one SSRF check per distinct callback_url of the batch
        try:
            await self._preparer.prepare(
                prepared, submissions, idempotency_key=None, now=now, caller=caller, checked=checked
            )
        except (ValidationError, UnknownScanner) as exc:
            # Name the item (the one after those prepared): in a batch of 1,000 a bare message is no help.
            raise type(exc)(f"scans[{len(prepared)}]: {exc.message}") from None
        await self._quotas.admit(caller.tenant, len(prepared))
        if checked and self._callbacks is not None:
            await self._callbacks.ensure_callback_endpoint(caller.tenant)
        created = await self._store.create_many(scans=prepared)
        if self._counters is not None:
            self._counters.record_submitted(sum(1 for c in created if c.is_new))
        return [c.scan for c in created]

    async def cancel(self, scan_id: str, *, caller: Caller = OPERATOR) -> Scan:
        """Cancel a scan (see ``Store.cancel``); cancelling a Cancelled scan again answers it as it is.

        Raise ``Forbidden``, ``ScanNotFound`` (also for a malformed id, without a store call, and for
        another tenant's scan) or ``ScanFinished`` (Complete or Error).
        """
        require(caller, Scope.CANCEL)
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        tenant = caller.tenant_filter()
        try:
            scan = await self._store.cancel(scan_id=scan_id, tenant=tenant, by=caller.actor)
        except ScanFinished as exc:
            if exc.status != ScanStatus.CANCELLED:
                raise
            # Idempotent: a retried cancel (a lost answer, a double click) gets the scan, not a 409.
            return await self._store.get(scan_id=scan_id, tenant=tenant)
        if self._counters is not None:
            self._counters.record_cancelled()
        logger.info(
            "scan %s cancel: now %s",
            scan_id,
            scan.status,
            extra={"action": "scan_cancel", "scan_id": scan_id, "token_id": _token_id(caller)},
        )
        return scan

    async def get(self, scan_id: str, *, caller: Caller = OPERATOR) -> Scan:
        """One scan; raise ``Forbidden`` or ``ScanNotFound`` (also for a malformed id, with no store call)."""
        require(caller, Scope.READ)
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        return await self._store.get(scan_id=scan_id, tenant=caller.tenant_filter())

    async def list_scans(
        self,
        *,
        status: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
        tenant: str | None = None,
        caller: Caller = OPERATOR,
    ) -> Page:
        """A page of scans, newest first.

        Args:
            status: a ``ScanStatus`` value to filter on, or None for every scan.
            limit: page size, 1 to ``MAX_PAGE_SIZE``.
            cursor: the ``next_cursor`` of the previous page.
            tenant: only this tenant's scans (an admin's filter; others may name only their own).
            caller: who asks.

        The cursor carries the filter of the list it continues: without ``status`` it
        goes on with that filter, and a different ``status`` is refused.

        Raise ``Forbidden``, or ``ValidationError`` for an unknown status, a limit out of range, a cursor
        scanq did not make, or a cursor of another filter.
        """
        scope = self._read_scope(caller, tenant)
        wanted = parse_status(status) if status is not None else None
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE_SIZE} (got {limit})")
        store_cursor: str | None = None
        if cursor is not None:
            continued, store_cursor = decode_page_cursor(cursor)
            if status is not None and continued != wanted:
                raise ValidationError(
                    f"this cursor continues the list of {filter_name(continued)}, not of {filter_name(wanted)}: "
                    "leave status out to follow it, or start without a cursor"
                )
            wanted = continued
        page = await self._store.list_scans(status=wanted, limit=limit, cursor=store_cursor, tenant=scope)
        if page.next_cursor is None:
            return page
        return Page(scans=page.scans, next_cursor=encode_page_cursor(page.next_cursor, status=wanted))

    async def stats(self, *, tenant: str | None = None, caller: Caller = OPERATOR) -> QueueStats:
        """Counts by status and the age in seconds of the oldest Accepted scan (None when there is none).

        ``tenant``: as in ``list_scans``; a caller that is not admin always gets its own tenant's.
        """
        scope = self._read_scope(caller, tenant)
        stats = await self._store.stats(tenant=scope)
        age: float | None = None
        if stats.oldest_accepted_at is not None:
            age = round(max(0.0, (datetime.now(UTC) - stats.oldest_accepted_at).total_seconds()), 3)
        counts = {status: stats.counts.get(status, 0) for status in ScanStatus}
        if scope is None:
            queues = await self._store.tenant_queues(limit=MAX_TENANT_QUEUES)
        elif counts[ScanStatus.ACCEPTED] or counts[ScanStatus.RUNNING]:
            queues = [
                TenantQueue(
                    tenant=scope,
                    accepted=counts[ScanStatus.ACCEPTED],
                    running=counts[ScanStatus.RUNNING],
                    oldest_accepted_at=stats.oldest_accepted_at,
                )
            ]
        else:
            queues = []
        return QueueStats(counts=counts, oldest_accepted_age_s=age, tenants=queues)

    def _read_scope(self, caller: Caller, tenant: str | None) -> str | None:
        return read_scope(caller, tenant)

    async def throughput(
        self, *, window_s: float, step_s: float, tenant: str | None = None, caller: Caller = OPERATOR
    ) -> Throughput:
        """How many scans finished, per terminal status, in each ``step_s`` of the last ``window_s`` (rounded up).

        Raise ``ValidationError`` for a window over a day, a step under a second, or more than
        ``MAX_THROUGHPUT_BUCKETS`` steps: the store counts from its ``finished_at`` index, so the
        cost is bounded by the window, never by the table.
        """
        scope = self._read_scope(caller, tenant)
        steps = check_throughput_bounds(window_s=window_s, step_s=step_s)
        until_s = (math.floor(datetime.now(UTC).timestamp() / step_s) + 1) * step_s
        since, until = (datetime.fromtimestamp(t, UTC) for t in (until_s - steps * step_s, until_s))
        counts = [dict.fromkeys(FINISHED_STATUSES, 0) for _ in range(steps)]
        for start, by_status in await self._store.finished_counts(
            since=since, until=until, step_s=step_s, tenant=scope
        ):
            # By index, not by equal datetimes: a backend may round a bucket's start to its own precision.
            index = round((start - since).total_seconds() / step_s)
            for status, count in by_status.items():
                if 0 <= index < steps and status in counts[index]:
                    counts[index][status] += count
        starts = (since + timedelta(seconds=i * step_s) for i in range(steps))
        return Throughput(since=since, until=until, step_s=step_s, buckets=list(zip(starts, counts, strict=True)))


def read_scope(caller: Caller, tenant: str | None, *, scope: Scope = Scope.READ, what: str = "scans") -> str | None:
    """The tenant a read by ``caller`` covers (None: all); ``Forbidden`` without ``scope``, or for another
    tenant's unless admin (``tenant``: the filter asked for, None: the caller's own, or every tenant for an admin)."""
    require(caller, scope)
    if tenant is not None and not caller.is_admin and tenant != caller.tenant:
        raise Forbidden(f"only an admin token reads other tenants' {what}")
    return caller.tenant_filter(tenant)


def require(caller: Caller, scope: Scope) -> None:
    """Raise ``Forbidden`` unless ``caller`` holds ``scope``."""
    if not caller.may(scope):
        raise Forbidden(f"this API token lacks the {scope.value!r} scope")


def _token_id(caller: Caller) -> str | None:
    return None if caller.actor is None else caller.actor.token_id


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SUBMISSION",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_OPTIONS_DEPTH",
    "MAX_PAGE_CURSOR_LENGTH",
    "MAX_PAGE_SIZE",
    "MAX_PRIORITY",
    "MAX_SCANNER_NAME_LENGTH",
    "MAX_TARGET_LENGTH",
    "MAX_THROUGHPUT_BUCKETS",
    "MAX_THROUGHPUT_WINDOW_S",
    "MIN_PRIORITY",
    "MIN_THROUGHPUT_STEP_S",
    "PAGE_CURSOR_PATTERN",
    "QueueStats",
    "ScanService",
    "Submission",
    "SubmitRequest",
    "Throughput",
    "read_scope",
    "require",
]
