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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from scanq.config import Settings

# The cursor, page and throughput bounds are re-exported: entry points read bounds here.
from scanq.cursors import (
    MAX_PAGE_CURSOR_LENGTH,
    PAGE_CURSOR_PATTERN,
    decode_page_cursor,
    encode_page_cursor,
    filter_name,
)
from scanq.exceptions import IdempotencyConflict, ScanFinished, ScanNotFound, UnknownScanner, ValidationError
from scanq.ids import is_scan_id, new_scan_id
from scanq.models import Created, NewScan, Page, Scan, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.store.base import FINISHED_STATUSES, MAX_PAGE_SIZE, Store
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

MIN_PRIORITY = -1000
MAX_PRIORITY = 1000
MAX_ATTEMPTS_LIMIT = 100
MAX_TARGET_LENGTH = 2048
MAX_SCANNER_NAME_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Plugins read flat options; deep nesting only serves to exhaust a recursive encoder downstream.
MAX_OPTIONS_DEPTH = 16
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
STATUS_NAMES = ", ".join(s.value for s in ScanStatus)


class Submission(Protocol):
    """What a client asks for; None fields take the service defaults.

    ``api.schemas.ScanRequest`` is one (the decoded HTTP body is passed as is);
    ``SubmitRequest`` is one for every other caller.
    """

    @property
    def target(self) -> str | None: ...

    @property
    def scanner(self) -> str | None: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def priority(self) -> int: ...

    @property
    def max_attempts(self) -> int | None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class SubmitRequest:
    """A plain ``Submission``: ``SubmitRequest()`` is the default scan that ``GET /`` queues."""

    target: str | None = None
    scanner: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int | None = None


DEFAULT_SUBMISSION = SubmitRequest()


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """Counts by status (every status present) and how long the oldest Accepted scan has waited."""

    counts: Mapping[ScanStatus, int]
    oldest_accepted_age_s: float | None


class ScanService:
    """Submit, cancel and read scans.

    Args:
        store: an open store.
        scanners: the plugins that validate targets at submit time.
        settings: defaults (scanner, max_attempts) and limits (max_batch).
        counters: Prometheus counters of new scans and accepted cancels (None: count nothing).
    """

    def __init__(
        self, store: Store, scanners: ScannerRegistry, settings: Settings, *, counters: ScanCounters | None = None
    ) -> None:
        self._store = store
        self._scanners = scanners
        self._settings = settings
        self._counters = counters

    async def submit(self, submission: Submission, *, idempotency_key: str | None = None) -> Created:
        """Validate and store one scan; ``is_new`` is False when ``idempotency_key`` matched an earlier one.

        Raise ``ValidationError``/``TargetRefused``/``UnknownScanner`` before writing anything, and
        ``IdempotencyConflict`` when the key was used for a different request (nothing is written then either).
        """
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        new = await self._prepare(submission, idempotency_key=idempotency_key, now=datetime.now(UTC))
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

    async def submit_many(self, submissions: Sequence[Submission]) -> list[Scan]:
        """Validate every submission, then store them all in one transaction: all or none.

        Raise ``ValidationError`` (naming the item) for an empty or oversized batch or any invalid item.
        """
        if not submissions:
            raise ValidationError("a batch needs at least one scan")
        if len(submissions) > self._settings.max_batch:
            raise ValidationError(f"a batch holds at most {self._settings.max_batch} scans (got {len(submissions)})")
        now = datetime.now(UTC)
        prepared: list[NewScan] = []
        for index, submission in enumerate(submissions):
            try:
                prepared.append(await self._prepare(submission, idempotency_key=None, now=now))
            except (ValidationError, UnknownScanner) as exc:
                # Name the item: in a batch of 1,000 a bare message is no help.
                raise type(exc)(f"scans[{index}]: {exc.message}") from None
        created = await self._store.create_many(scans=prepared)
        if self._counters is not None:
            self._counters.record_submitted(sum(1 for c in created if c.is_new))
        return [c.scan for c in created]

    async def cancel(self, scan_id: str) -> Scan:
        """Cancel a scan (see ``Store.cancel``); cancelling a Cancelled scan again answers it as it is.

        Raise ``ScanNotFound`` (also for a malformed id, without a store call) or ``ScanFinished``
        (Complete or Error).
        """
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        try:
            scan = await self._store.cancel(scan_id=scan_id)
        except ScanFinished as exc:
            if exc.status != ScanStatus.CANCELLED:
                raise
            # Idempotent: a retried cancel (a lost answer, a double click) gets the scan, not a 409.
            return await self._store.get(scan_id=scan_id)
        if self._counters is not None:
            self._counters.record_cancelled()
        logger.info("scan %s cancel: now %s", scan_id, scan.status, extra={"action": "scan_cancel", "scan_id": scan_id})
        return scan

    async def get(self, scan_id: str) -> Scan:
        """One scan; raise ``ScanNotFound``, also for an id that is not a canonical UUID (no store call then)."""
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        return await self._store.get(scan_id=scan_id)

    async def list_scans(
        self, *, status: str | None = None, limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
    ) -> Page:
        """A page of scans, newest first.

        Args:
            status: a ``ScanStatus`` value to filter on, or None for every scan.
            limit: page size, 1 to ``MAX_PAGE_SIZE``.
            cursor: the ``next_cursor`` of the previous page.

        The cursor carries the filter of the list it continues: without ``status`` it
        goes on with that filter, and a different ``status`` is refused.

        Raise ``ValidationError`` for an unknown status, a limit out of range, a cursor scanq did not
        make, or a cursor of another filter.
        """
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
        page = await self._store.list_scans(status=wanted, limit=limit, cursor=store_cursor)
        if page.next_cursor is None:
            return page
        return Page(scans=page.scans, next_cursor=encode_page_cursor(page.next_cursor, status=wanted))

    async def stats(self) -> QueueStats:
        """Counts by status and the age in seconds of the oldest Accepted scan (None when there is none)."""
        stats = await self._store.stats()
        age: float | None = None
        if stats.oldest_accepted_at is not None:
            age = round(max(0.0, (datetime.now(UTC) - stats.oldest_accepted_at).total_seconds()), 3)
        counts = {status: stats.counts.get(status, 0) for status in ScanStatus}
        return QueueStats(counts=counts, oldest_accepted_age_s=age)

    async def throughput(self, *, window_s: float, step_s: float, tenant: str | None = None) -> Throughput:
        """How many scans finished, per terminal status, in each ``step_s`` of the last ``window_s`` (rounded up).

        Raise ``ValidationError`` for a window over a day, a step under a second, or more than
        ``MAX_THROUGHPUT_BUCKETS`` steps: the store counts from its ``finished_at`` index, so the
        cost is bounded by the window, never by the table.
        """
        steps = check_throughput_bounds(window_s=window_s, step_s=step_s)
        until_s = (math.floor(datetime.now(UTC).timestamp() / step_s) + 1) * step_s
        since, until = (datetime.fromtimestamp(t, UTC) for t in (until_s - steps * step_s, until_s))
        counts = [dict.fromkeys(FINISHED_STATUSES, 0) for _ in range(steps)]
        for start, by_status in await self._store.finished_counts(
            since=since, until=until, step_s=step_s, tenant=tenant
        ):
            # By index, not by equal datetimes: a backend may round a bucket's start to its own precision.
            index = round((start - since).total_seconds() / step_s)
            for status, count in by_status.items():
                if 0 <= index < steps and status in counts[index]:
                    counts[index][status] += count
        starts = (since + timedelta(seconds=i * step_s) for i in range(steps))
        return Throughput(since=since, until=until, step_s=step_s, buckets=list(zip(starts, counts, strict=True)))

    async def _prepare(self, submission: Submission, *, idempotency_key: str | None, now: datetime) -> NewScan:
        """Apply defaults and bounds and let the plugin normalise the target; raise before anything is written."""
        check_bounds(submission)
        scanner = submission.scanner or self._settings.default_scanner
        options = dict(submission.options)
        # The plugin may refuse the target (TargetRefused) or the options (ValidationError).
        target = await self._scanners.get(scanner).validate(target=submission.target, options=options)
        max_attempts = submission.max_attempts
        return NewScan(
            scan_id=new_scan_id(),
            created_at=now,
            target=target,
            scanner=scanner,
            options=options,
            priority=submission.priority,
            max_attempts=self._settings.max_attempts if max_attempts is None else max_attempts,
            idempotency_key=idempotency_key,
        )


def check_bounds(submission: Submission) -> None:
    """Raise ``ValidationError`` for a field out of its bounds (the HTTP schema checks the same, callers may not)."""
    if submission.target is not None:
        if not 0 < len(submission.target) <= MAX_TARGET_LENGTH:
            raise ValidationError(f"target must be 1 to {MAX_TARGET_LENGTH} characters long")
        if "\x00" in submission.target:
            raise ValidationError("target must not contain the NUL character (\\u0000)")
    if submission.scanner is not None and not 0 < len(submission.scanner) <= MAX_SCANNER_NAME_LENGTH:
        raise ValidationError(f"scanner must be 1 to {MAX_SCANNER_NAME_LENGTH} characters long")
    if not MIN_PRIORITY <= submission.priority <= MAX_PRIORITY:
        raise ValidationError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY} (got {submission.priority})")
    if submission.max_attempts is not None and not 1 <= submission.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValidationError(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT} (got {submission.max_attempts})"
        )
    options = submission.options
    # The exact-type test first: an ABC isinstance costs a microsecond on the hot path.
    if type(options) is not dict and not isinstance(options, Mapping):
        raise ValidationError("options must be a JSON object")
    if options:
        check_options(options)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``ValidationError`` unless ``options`` is JSON every backend stores as sent.

    That is: nested at most ``MAX_OPTIONS_DEPTH`` deep (deeper only serves to exhaust a
    recursive encoder), no NUL character in a key or string (PostgreSQL cannot store one),
    and integers within 64 bits (MongoDB's limit). Walks without recursing.
    """
    stack: list[tuple[object, int]] = [(options, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise ValidationError("options must not contain the NUL character (\\u0000)")
        elif isinstance(node, int) and not isinstance(node, bool):
            if not MIN_INT64 <= node <= MAX_INT64:
                raise ValidationError("options integers must fit in 64 bits")
        elif isinstance(node, Mapping | list | tuple):
            if depth >= MAX_OPTIONS_DEPTH:
                raise ValidationError(f"options nest deeper than {MAX_OPTIONS_DEPTH} levels")
            if isinstance(node, Mapping):
                stack.extend((key, depth) for key in node)
                stack.extend((child, depth + 1) for child in node.values())
            else:
                stack.extend((child, depth + 1) for child in node)


def check_idempotency_key(key: str) -> None:
    """Raise ``ValidationError`` for an empty or overlong key."""
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters long")
    if "\x00" in key:
        raise ValidationError("Idempotency-Key must not contain the NUL character")


def parse_status(value: str) -> ScanStatus:
    """The ``ScanStatus`` named ``value``; raise ``ValidationError`` listing the valid ones."""
    try:
        return ScanStatus(value)
    except ValueError:
        raise ValidationError(f"unknown status {value!r} (use one of {STATUS_NAMES})") from None


def is_same_request(stored: Scan, new: NewScan) -> bool:
    """True when a replayed submission asks for what the stored scan already holds (after defaults).

    Options are compared as JSON text, not as Python values: ``true`` and ``1``,
    ``1`` and ``1.0``, ``-0.0`` and ``0.0`` are equal in Python but were not the
    same submission. Keys are sorted first: JSON objects are unordered.
    """
    return (
        stored.target == new.target
        and stored.scanner == new.scanner
        and stored.priority == new.priority
        and stored.max_attempts == new.max_attempts
        and encode_options(stored.options) == encode_options(new.options)
    )


def encode_options(options: Mapping[str, Any]) -> bytes:
    """``options`` as canonical JSON text: keys sorted, every number in the form it was given."""
    return msgspec.json.encode(options, order="sorted")


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
]
