"""The worker's retention on the MemoryStore: passes in batches, dry runs, the archive first, one pruner at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from scanq.archive import ArchiveWriter, read_archive
from scanq.config import Settings
from scanq.exceptions import ConfigError, RetentionBusy
from scanq.ids import new_scan_id
from scanq.metrics import WorkerMetrics, make_registry
from scanq.models import (
    DEFAULT_WEBHOOK_EVENTS,
    DeliveryOutcome,
    DeliveryResult,
    Finish,
    Lease,
    NewScan,
    Outcome,
    Scan,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.retention import RetentionPolicy
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.memory import MemoryStore
from scanq.worker.retention import prune_once, prune_pass, retention_loop
from tests.prometheus import sample_value

DEADLINE_S = 10.0
# Ages this short make every finished scan due at once (the grammar's smallest is a second).
AT_ONCE = timedelta(microseconds=1)
COMPLETE_AT_ONCE = RetentionPolicy(ages={ScanStatus.COMPLETE: AT_ONCE})


@pytest.fixture
def url() -> str:
    return f"memory://{uuid.uuid4()}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(url) as opened:
        yield opened


def worker_metrics() -> tuple[WorkerMetrics, CollectorRegistry]:
    registry = make_registry(process_metrics=False)
    return WorkerMetrics(registry, worker_id="w", in_flight=lambda: 0), registry


def pruned_metric(registry: CollectorRegistry, status: ScanStatus) -> float | None:
    return sample_value(generate_latest(registry).decode(), "scanq_scans_pruned_total", {"status": status.value})


async def finish(store: MemoryStore, outcome: Outcome, count: int) -> list[str]:
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)) for _ in range(count)]
    await store.create_many(scans=news)
    claimed = await store.claim(worker_id="w", limit=count, lease_s=30)
    leases = [Lease(scan_id=scan.scan_id, worker_id="w", attempt=1) for scan in claimed]
    await store.finish(finishes=[Finish(lease=lease, outcome=outcome, result={}, error="x") for lease in leases])
    return sorted(new.scan_id for new in news)


async def stored_ids(store: MemoryStore, status: ScanStatus) -> list[str]:
    return sorted(scan.scan_id for scan in (await store.list_scans(status=status, limit=1000)).scans)


async def test_a_pass_deletes_due_scans_in_batches_and_counts_them(store: MemoryStore) -> None:
    await finish(store, Outcome.COMPLETE, 7)
    errors = await finish(store, Outcome.ERROR, 2)
    metrics, registry = worker_metrics()
    calls: list[int] = []
    prune = store.prune

    async def recording_prune(**kwargs: Any) -> list[Scan]:
        pruned = await prune(**kwargs)
        calls.append(len(pruned))
        return pruned

    store.prune = recording_prune  # type: ignore[method-assign]

    report = await prune_pass(store, COMPLETE_AT_ONCE, owner="w", metrics=metrics, batch=3)

    assert calls == [3, 3, 1]
    assert report.pruned == {ScanStatus.COMPLETE: 7} and not report.lost_role
    assert await stored_ids(store, ScanStatus.COMPLETE) == []
    assert await stored_ids(store, ScanStatus.ERROR) == errors  # no age for Error: kept forever
    assert pruned_metric(registry, ScanStatus.COMPLETE) == 7
    assert (await store.stats()).counts[ScanStatus.COMPLETE] == 0


async def test_a_dry_run_counts_and_deletes_nothing_even_while_another_holds_the_role(store: MemoryStore) -> None:
    done = await finish(store, Outcome.COMPLETE, 4)
    assert await store.lead(role=RETENTION_ROLE, owner="someone-else", term_s=60)

    report = await prune_pass(store, COMPLETE_AT_ONCE, owner="w", dry_run=True)

    assert report.pruned == {ScanStatus.COMPLETE: 4} and report.is_dry_run
    assert await stored_ids(store, ScanStatus.COMPLETE) == done
    assert report.lines()[0].startswith("Complete: would delete 4 scans finished before ")


async def test_a_pass_without_the_role_deletes_nothing(store: MemoryStore) -> None:
    done = await finish(store, Outcome.COMPLETE, 2)
    assert await store.lead(role=RETENTION_ROLE, owner="someone-else", term_s=60)

    report = await prune_pass(store, COMPLETE_AT_ONCE, owner="w")

    assert report.lost_role and report.total == 0
    assert await stored_ids(store, ScanStatus.COMPLETE) == done


async def test_with_an_archive_each_batch_is_written_before_it_is_deleted(store: MemoryStore, tmp_path: Path) -> None:
    done = await finish(store, Outcome.COMPLETE, 5)
    archive = ArchiveWriter(tmp_path, owner="w")
    write = archive.write
    stored_at_write: list[list[str]] = []

    def checking_write(scans: Sequence[Scan]) -> Path:
        # Called from a thread while the pass waits: the store is not touched meanwhile.
        stored_at_write.append(sorted(store._scans))
        return write(scans)

    archive.write = checking_write  # type: ignore[method-assign]

    report = await prune_pass(store, COMPLETE_AT_ONCE, owner="w", archive=archive, batch=2)

    assert [scan["scan_id"] for scan in read_archive(tmp_path)] == sorted(done)
    assert [len(ids) for ids in stored_at_write] == [5, 3, 1]  # every batch still stored when written
    assert await stored_ids(store, ScanStatus.COMPLETE) == []
    assert report.archived_to == {archive.path}


async def test_a_batch_the_archive_cannot_take_is_not_deleted(store: MemoryStore, tmp_path: Path) -> None:
    done = await finish(store, Outcome.COMPLETE, 3)
    archive = ArchiveWriter(tmp_path / "file-in-the-way", owner="w")
    (tmp_path / "file-in-the-way").write_text("not a directory")

    with pytest.raises(OSError):
        await prune_pass(store, COMPLETE_AT_ONCE, owner="w", archive=archive)

    assert await stored_ids(store, ScanStatus.COMPLETE) == done


@pytest.mark.slow
async def test_only_one_of_two_workers_prunes_and_the_role_moves_when_it_stops(store: MemoryStore, url: str) -> None:
    first_metrics, first_registry = worker_metrics()
    second_metrics, second_registry = worker_metrics()
    async with MemoryStore(url) as other:
        first = asyncio.create_task(
            retention_loop(store=store, policy=COMPLETE_AT_ONCE, owner="a", metrics=first_metrics)
        )
        await wait_for_role(store, "a")
        second = asyncio.create_task(
            retention_loop(store=other, policy=COMPLETE_AT_ONCE, owner="b", metrics=second_metrics)
        )
        try:
            await finish(store, Outcome.COMPLETE, 3)
            await wait_until_gone(store)
            assert pruned_metric(first_registry, ScanStatus.COMPLETE) == 3
            assert pruned_metric(second_registry, ScanStatus.COMPLETE) is None

            first.cancel()  # a graceful stop resigns: the other takes over at its next pass
            await asyncio.gather(first, return_exceptions=True)
            await finish(store, Outcome.COMPLETE, 2)
            await wait_until_gone(store)
            assert pruned_metric(second_registry, ScanStatus.COMPLETE) == 2
        finally:
            for task in (first, second):
                task.cancel()
            await asyncio.gather(first, second, return_exceptions=True)


async def test_prune_by_hand_refuses_while_a_worker_holds_the_role(store: MemoryStore, url: str) -> None:
    await finish(store, Outcome.COMPLETE, 2)
    cfg = Settings(database_url=url, retention=("Complete=1s",))
    assert await store.lead(role=RETENTION_ROLE, owner="worker", term_s=60)

    with pytest.raises(RetentionBusy):
        await prune_once(cfg, owner="by-hand")
    await store.resign(role=RETENTION_ROLE, owner="worker")
    report = await prune_once(cfg, owner="by-hand", dry_run=True)

    assert report.pruned == {ScanStatus.COMPLETE: 0}  # finished less than a second ago
    assert await store.lead(role=RETENTION_ROLE, owner="worker", term_s=60)  # prune_once resigned


async def wait_for_role(store: MemoryStore, owner: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (holder := store._shared.leaders.get(RETENTION_ROLE)) is None or holder[0] != owner:
            await asyncio.sleep(0.01)


async def wait_until_gone(store: MemoryStore) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await store.stats()).counts[ScanStatus.COMPLETE]:
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_scan_events_are_pruned_without_any_retention_policy_once_dispatched(store: MemoryStore) -> None:
    metrics, registry = worker_metrics()
    await finish(store, Outcome.COMPLETE, 3)  # Accepted, Running, Complete: 9 events
    assert await store.lead(role=WEBHOOK_ROLE, owner="dispatcher", term_s=60)
    assert await store.dispatch_events(owner="dispatcher") == 9
    loop = asyncio.create_task(
        retention_loop(store=store, policy=RetentionPolicy(), owner="a", metrics=metrics, event_retention_s=1e-6)
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            while await store.read_events():
                await asyncio.sleep(0.02)
        assert sample_value(generate_latest(registry).decode(), "scanq_events_pruned_total") == 9

        await finish(store, Outcome.COMPLETE, 1)  # not dispatched yet: kept, whatever their age
        await asyncio.sleep(1.5)  # a pass or more later
        assert len(await store.read_events()) == 3
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_ended_deliveries_are_pruned_by_the_loop_after_their_retention(store: MemoryStore) -> None:
    made = datetime.now(UTC) - timedelta(seconds=5)
    endpoint = WebhookEndpoint(
        endpoint_id="ep",
        tenant="default",
        url="https://93.184.215.14/hook",
        event_types=DEFAULT_WEBHOOK_EVENTS,
        secret="whsec_c2VjcmV0",
        created_at=made,
        updated_at=made,
    )
    await store.create_endpoint(endpoint=endpoint)
    await finish(store, Outcome.COMPLETE, 2)
    assert await store.lead(role=WEBHOOK_ROLE, owner="dispatcher", term_s=60)
    await store.dispatch_events(owner="dispatcher")
    jobs = await store.claim_deliveries(worker_id="w", limit=10, lease_s=30)
    ended = DeliveryResult(
        endpoint_id="ep", event_id=jobs[0].delivery.event.event_id, worker_id="w", outcome=DeliveryOutcome.DELIVERED
    )
    assert await store.record_deliveries(results=[ended]) == [True]
    loop = asyncio.create_task(
        retention_loop(store=store, policy=RetentionPolicy(), owner="a", delivery_retention_s=1e-6)
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(await store.list_deliveries(endpoint_id="ep")) != 1:
                await asyncio.sleep(0.02)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    (left,) = await store.list_deliveries(endpoint_id="ep")
    assert left.event.event_id == jobs[1].delivery.event.event_id  # still pending (leased): kept


def test_the_delivery_retention_setting_must_be_positive() -> None:
    assert Settings().delivery_retention_seconds == 604800
    with pytest.raises(ConfigError, match="DELIVERY_RETENTION_SECONDS"):
        Settings(delivery_retention_seconds=0)
