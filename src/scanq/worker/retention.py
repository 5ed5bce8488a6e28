"""Retention: delete finished scans older than ``--retention`` allows, and old scan events, one worker at a time.

Every worker runs ``retention_loop`` when a policy is set, but only the one
holding the store's retention role (``Store.lead``, ``RETENTION_ROLE``) prunes;
the others keep asking at each pass and take over when the holder's term ends
(a worker that died) or it resigns (a worker that stopped). A pass goes through
each status with an age in short batches (``Store.prune``, ``RETENTION_BATCH``
scans each, oldest ``finished_at`` first), renewing the role before each batch,
until nothing older than the cutoff is left. With ``--retention-archive`` each
batch is first written to the archive and fsynced (``scanq.archive``), and only
the scans written are deleted. Each pass logs what it removed and counts it in
``scanq_scans_pruned_total{status}``. ``prune_once`` is ``scanq prune``.

Scan events (the log live streams and webhooks are made from) are pruned by
the same loop, whether or not ``--retention`` is set, so they never grow
without bound: each pass also deletes the events older than
``--event-retention-seconds`` (``Store.prune_events``, in batches, with the
role; the store keeps those the webhook dispatcher has not passed yet, and
every worker runs the dispatcher, ``--no-webhooks`` or not). Likewise the
webhook deliveries that ended (delivered or failed) longer than
``--delivery-retention-seconds`` ago (``Store.prune_deliveries``); pending
ones are kept until they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scanq.archive import ArchiveWriter
from scanq.config import Settings
from scanq.exceptions import RetentionBusy
from scanq.metrics import WorkerMetrics
from scanq.models import ScanStatus
from scanq.retention import MAX_INTERVAL_S, MIN_INTERVAL_S, PASSES_PER_AGE, RetentionPolicy
from scanq.store import Store, open_store
from scanq.store.base import RETENTION_ROLE
from scanq.worker.retry import log_store_failure

logger = logging.getLogger("scanq.worker")

RETENTION_BATCH = 500
# Between two batches of a pass: room for the queue's own writes (a backlog still goes at thousands a second).
RETENTION_PAUSE_S = 0.01
# The role is renewed before every batch; a holder that stops renewing hands it on after this long.
RETENTION_TERM_S = 120.0
RESIGN_TIMEOUT_S = 5.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(kw_only=True, slots=True)
class PassReport:
    """What one retention pass did (or, in a dry run, would do): scans by status, the cutoff of each."""

    cutoffs: dict[ScanStatus, datetime]
    pruned: dict[ScanStatus, int] = field(default_factory=dict)
    archived_to: set[Path] = field(default_factory=set)
    is_dry_run: bool = False
    lost_role: bool = False

    @property
    def total(self) -> int:
        return sum(self.pruned.values())

    def lines(self) -> list[str]:
        """The report for a person: one line per status, and the archive files written."""
        verb = "would delete" if self.is_dry_run else "deleted"
        if not self.cutoffs:
            return ["no --retention set: every finished scan is kept"]
        found = [
            f"{status}: {verb} {self.pruned.get(status, 0)} scans finished before {cutoff:%Y-%m-%dT%H:%M:%SZ}"
            for status, cutoff in self.cutoffs.items()
        ]
        return found + [f"archived in {path}" for path in sorted(self.archived_to)]


async def prune_pass(
    store: Store,
    policy: RetentionPolicy,
    *,
    owner: str,
    archive: ArchiveWriter | None = None,
    metrics: WorkerMetrics | None = None,
    dry_run: bool = False,
    batch: int = RETENTION_BATCH,
    term_s: float = RETENTION_TERM_S,
    tenant: str | None = None,
) -> PassReport:
    """One pass of ``policy`` as ``owner``: every status's scans finished before its cutoff, batch by batch.

    Stops early (``lost_role``) when ``owner`` does not hold the retention role or loses it; a dry
    run counts what a pass would delete (from ``finished_counts``), holding no role and deleting nothing.
    ``tenant``: only that tenant's scans (None: every tenant's).
    """
    report = PassReport(cutoffs=policy.cutoffs(datetime.now(UTC)), is_dry_run=dry_run)
    for status, cutoff in report.cutoffs.items():
        if dry_run:
            report.pruned[status] = await _count_before(store, status, cutoff, tenant=tenant)
            continue
        removed = 0
        first: str | None = None
        last: str | None = None
        while True:
            if not await store.lead(role=RETENTION_ROLE, owner=owner, term_s=term_s):
                report.lost_role = True
                break
            if archive is None:
                pruned = await store.prune(
                    status=status, finished_before=cutoff, limit=batch, owner=owner, tenant=tenant
                )
            else:
                due = await store.prune(
                    status=status, finished_before=cutoff, limit=batch, owner=owner, dry_run=True, tenant=tenant
                )
                if not due:
                    break
                report.archived_to.add(await asyncio.to_thread(archive.write, due))
                pruned = await store.prune(
                    status=status,
                    finished_before=cutoff,
                    limit=batch,
                    owner=owner,
                    scan_ids=[scan.scan_id for scan in due],
                    tenant=tenant,
                )
                if not pruned:  # the role moved between the archive and the delete
                    report.lost_role = True
                    break
            if pruned:
                removed += len(pruned)
                first = first or pruned[0].scan_id
                last = pruned[-1].scan_id
                if metrics is not None:
                    metrics.record_pruned(status, len(pruned))
                logger.debug("retention: deleted %d %s scans", len(pruned), status, extra={"worker": owner})
            if len(pruned) < batch:
                break
            await asyncio.sleep(RETENTION_PAUSE_S)
        report.pruned[status] = removed
        if removed:
            logger.info(
                "retention: deleted %d %s scans finished before %s (first %s, last %s)%s",
                removed,
                status,
                cutoff.isoformat(timespec="seconds"),
                first,
                last,
                f", archived in {archive.directory}" if archive is not None else "",
                extra={"worker": owner, "status": str(status), "pruned": removed},
            )
        if report.lost_role:
            break
    return report


async def _count_before(store: Store, status: ScanStatus, cutoff: datetime, *, tenant: str | None) -> int:
    """How many ``status`` scans finished before ``cutoff``: one step of ``finished_counts`` since the epoch."""
    step_s = (cutoff - EPOCH).total_seconds()
    if step_s <= 0:
        return 0
    buckets = await store.finished_counts(since=EPOCH, until=cutoff, step_s=step_s, tenant=tenant)
    return sum(counts.get(status, 0) for _, counts in buckets)


async def prune_events_pass(
    store: Store,
    *,
    before: datetime,
    owner: str,
    metrics: WorkerMetrics | None = None,
    batch: int = RETENTION_BATCH,
    term_s: float = RETENTION_TERM_S,
) -> int:
    """Delete the scan events older than ``before`` as ``owner``, batch by batch, renewing the role before each.

    Returns how many were deleted; stops early when ``owner`` does not hold the retention role.
    """

    async def prune(limit: int) -> int:
        pruned = await store.prune_events(before=before, owner=owner, limit=limit)
        if metrics is not None:
            metrics.record_events_pruned(pruned)
        return pruned

    return await _in_batches(store, prune, what="scan events", before=before, owner=owner, batch=batch, term_s=term_s)


async def prune_deliveries_pass(
    store: Store, *, before: datetime, owner: str, batch: int = RETENTION_BATCH, term_s: float = RETENTION_TERM_S
) -> int:
    """Delete the webhook deliveries that ended before ``before`` as ``owner``, like ``prune_events_pass``."""

    async def prune(limit: int) -> int:
        return await store.prune_deliveries(before=before, owner=owner, limit=limit)

    return await _in_batches(
        store, prune, what="ended webhook deliveries", before=before, owner=owner, batch=batch, term_s=term_s
    )


async def _in_batches(
    store: Store,
    prune: Callable[[int], Awaitable[int]],
    *,
    what: str,
    before: datetime,
    owner: str,
    batch: int,
    term_s: float,
) -> int:
    """Call ``prune(batch)`` while it deletes a full batch, renewing the role before each; how many it deleted."""
    removed = 0
    while await store.lead(role=RETENTION_ROLE, owner=owner, term_s=term_s):
        pruned = await prune(batch)
        removed += pruned
        if pruned < batch:
            break
        await asyncio.sleep(RETENTION_PAUSE_S)
    if removed:
        logger.info(
            "retention: deleted %d %s from before %s",
            removed,
            what,
            before.isoformat(timespec="seconds"),
            extra={"worker": owner, "pruned": removed},
        )
    return removed


def event_pass_interval_s(event_retention_s: float) -> float:
    """How often events are pruned: a quarter of their retention, between a second and a minute."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, event_retention_s / PASSES_PER_AGE))


async def retention_loop(
    *,
    store: Store,
    policy: RetentionPolicy,
    owner: str,
    archive_dir: str = "",
    metrics: WorkerMetrics | None = None,
    event_retention_s: float | None = None,
    delivery_retention_s: float | None = None,
) -> None:
    """Run a pass every interval for as long as the worker runs; resign the role when cancelled.

    The interval is ``policy.interval_s`` (and ``event_pass_interval_s`` of the event and delivery
    ages when those are pruned, whichever is shortest). A store failure is logged and the pass tried
    again at the next interval: retention is never urgent.

    Args:
        event_retention_s: also delete scan events older than this (None: leave events alone).
        delivery_retention_s: also delete webhook deliveries that ended longer ago (None: keep them).
    """
    archive = ArchiveWriter(archive_dir, owner=owner) if archive_dir else None
    intervals = [policy.interval_s] if policy.is_enabled else []
    intervals += [event_pass_interval_s(age) for age in (event_retention_s, delivery_retention_s) if age is not None]
    interval_s = min(intervals, default=policy.interval_s)
    logger.info(
        "retention: %s%s%s (a pass every %.0fs, by one worker at a time)",
        policy,
        "" if event_retention_s is None else f"; scan events for {event_retention_s:g}s",
        "" if delivery_retention_s is None else f"; ended webhook deliveries for {delivery_retention_s:g}s",
        interval_s,
    )
    try:
        while True:
            try:
                if policy.is_enabled:
                    await prune_pass(store, policy, owner=owner, archive=archive, metrics=metrics)
                if event_retention_s is not None:
                    before = datetime.now(UTC) - timedelta(seconds=event_retention_s)
                    await prune_events_pass(store, before=before, owner=owner, metrics=metrics)
                if delivery_retention_s is not None:
                    before = datetime.now(UTC) - timedelta(seconds=delivery_retention_s)
                    await prune_deliveries_pass(store, before=before, owner=owner)
            except OSError as exc:  # the archive's disk (the stores raise StoreError)
                logger.error(
                    "retention: archive %s refused a batch (%s); nothing deleted, retrying in %.0fs",
                    archive_dir,
                    exc,
                    interval_s,
                )
            except Exception as exc:
                log_store_failure("retention", exc, interval_s)
            await asyncio.sleep(interval_s)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RESIGN_TIMEOUT_S):
                await store.resign(role=RETENTION_ROLE, owner=owner)


def start_retention(
    store: Store, settings: Settings, *, owner: str, metrics: WorkerMetrics | None
) -> asyncio.Task[None]:
    """The worker's retention task: scans per ``--retention`` (if set), events per ``--event-retention-seconds``,
    ended webhook deliveries per ``--delivery-retention-seconds``.

    Every worker runs it, ``--retention`` or not: scan events and deliveries are pruned either way.
    """
    policy = RetentionPolicy.parse(settings.retention)
    loop = retention_loop(
        store=store,
        policy=policy,
        owner=owner,
        archive_dir=settings.retention_archive,
        metrics=metrics,
        event_retention_s=settings.event_retention_seconds,
        delivery_retention_s=settings.delivery_retention_seconds,
    )
    return asyncio.create_task(loop, name="scanq-retention")


async def prune_once(settings: Settings, *, owner: str, dry_run: bool = False) -> PassReport:
    """``scanq prune``: one pass by hand, with the retention role (``RetentionBusy`` while a worker holds it)."""
    policy = RetentionPolicy.parse(settings.retention)
    is_pruning = policy.is_enabled and not dry_run
    archive = ArchiveWriter(settings.retention_archive, owner=owner) if settings.retention_archive else None
    async with open_store(settings.database_url) as store:
        if is_pruning and not await store.lead(role=RETENTION_ROLE, owner=owner, term_s=RETENTION_TERM_S):
            raise RetentionBusy()
        try:
            report = await prune_pass(store, policy, owner=owner, archive=archive, dry_run=dry_run)
        finally:
            if is_pruning:
                await store.resign(role=RETENTION_ROLE, owner=owner)
    if report.lost_role:
        raise RetentionBusy("lost the retention role to another process during the pass; try again later")
    return report


__all__ = [
    "RETENTION_BATCH",
    "RETENTION_TERM_S",
    "PassReport",
    "event_pass_interval_s",
    "prune_deliveries_pass",
    "prune_events_pass",
    "prune_once",
    "prune_pass",
    "retention_loop",
    "start_retention",
]
