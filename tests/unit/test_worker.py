"""Worker mechanics on the in-process MemoryStore: batching, slots, lease loss, forced stop, backoff."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import generate_latest

from scanq.backoff import backoff_delay
from scanq.config import Settings
from scanq.metrics import WorkerMetrics, make_registry
from scanq.models import Finish, Lease, Outcome, Scan, ScanStatus
from scanq.store.memory import MemoryStore
from scanq.worker import Worker, make_worker_id
from tests.prometheus import sample_value
from tests.scripted import new_scan, scripted_registry

FAST = {
    "lease_seconds": 1.0,
    "heartbeat_seconds": 0.05,
    "reaper_seconds": 0.05,
    "poll_seconds": 0.2,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.05,
    "shutdown_seconds": 0.2,
}


class RecordingStore(MemoryStore):
    """A real MemoryStore that also records the size of every claim and finish call."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.claim_limits: list[int] = []
        self.claim_caps: list[int | None] = []
        self.finish_sizes: list[int] = []

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        self.claim_limits.append(limit)
        self.claim_caps.append(max_per_target)
        return await super().claim(worker_id=worker_id, limit=limit, lease_s=lease_s, max_per_target=max_per_target)

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        self.finish_sizes.append(len(finishes))
        return await super().finish(finishes=finishes)


@pytest.fixture
async def store() -> AsyncIterator[RecordingStore]:
    async with RecordingStore(f"memory://{uuid.uuid4()}") as opened:
        yield opened


def settings(**changes: object) -> Settings:
    return Settings(**{**FAST, **changes})  # type: ignore[arg-type]


async def test_claims_in_batches_up_to_free_slots_and_never_exceeds_concurrency(store: RecordingStore) -> None:
    cfg = settings(concurrency=4)
    registry, scanner = scripted_registry(cfg)
    await store.create_many(scans=[new_scan(sleep=0.02) for _ in range(20)])

    await asyncio.wait_for(Worker(store, registry, cfg, burst=True).run(), 10)

    assert scanner.max_running == 4
    assert store.claim_limits[0] == 4
    assert all(1 <= limit <= 4 for limit in store.claim_limits)
    assert len([n for n in store.claim_limits if n > 0]) < 20  # batched, not one claim per scan
    assert (await store.stats()).counts[ScanStatus.COMPLETE] == 20


@pytest.mark.parametrize(("max_per_target", "cap"), [(2, 2), (5, 5), (0, None)])
async def test_every_claim_asks_for_the_per_target_cap(
    store: RecordingStore, max_per_target: int, cap: int | None
) -> None:
    cfg = settings(concurrency=4, max_per_target=max_per_target)
    registry, _ = scripted_registry(cfg)
    await store.create_many(scans=[new_scan(sleep=0.01) for _ in range(6)])

    await asyncio.wait_for(Worker(store, registry, cfg, burst=True).run(), 10)

    assert store.claim_caps and set(store.claim_caps) == {cap}


async def test_finishes_are_written_in_batches(store: RecordingStore) -> None:
    cfg = settings(concurrency=50)
    registry, _ = scripted_registry(cfg)
    await store.create_many(scans=[new_scan() for _ in range(200)])

    worker = Worker(store, registry, cfg, burst=True)
    await asyncio.wait_for(worker.run(), 10)

    assert sum(store.finish_sizes) == 200
    assert max(store.finish_sizes) > 1
    assert len(store.finish_sizes) < 200
    assert worker.counts[Outcome.COMPLETE] == 200


async def test_burst_returns_at_once_on_an_empty_queue(store: RecordingStore) -> None:
    cfg = settings(concurrency=3)
    worker = Worker(store, scripted_registry(cfg)[0], cfg, burst=True)

    await asyncio.wait_for(worker.run(), 2)

    assert store.claim_limits == [3]  # one claim found nothing: no poll, no wait for work
    assert store.finish_sizes == []
    assert sum(worker.counts.values()) == 0


async def test_unexpected_exception_is_an_error_with_type_and_message(store: RecordingStore) -> None:
    cfg = settings()
    created = await store.create(scan=new_scan(fail="crash"))

    await asyncio.wait_for(Worker(store, scripted_registry(cfg)[0], cfg, burst=True).run(), 5)

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.ERROR
    assert scan.error == "ValueError: boom"
    assert scan.attempt == 1


async def test_unknown_scanner_is_an_error_naming_it(store: RecordingStore) -> None:
    cfg = settings()
    created = await store.create(scan=new_scan(scanner="no-such-scanner"))

    await asyncio.wait_for(Worker(store, scripted_registry(cfg)[0], cfg, burst=True).run(), 5)

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.ERROR
    assert scan.error is not None and "no-such-scanner" in scan.error


async def test_a_lost_lease_stops_the_scan_and_drops_its_outcome(store: RecordingStore) -> None:
    cfg = settings()
    registry, scanner = scripted_registry(cfg)
    created = await store.create(scan=new_scan(block=True))
    worker = Worker(store, registry, cfg, worker_id="w-1")
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(scanner.started.wait(), 5)

    # Another worker takes the scan over (as after a lease expiry): ours must stop and write nothing.
    await store.release(leases=[Lease(scan_id=created.scan.scan_id, worker_id="w-1", attempt=1)])
    [stolen] = await store.claim(worker_id="thief", limit=1, lease_s=30)
    async with asyncio.timeout(10):
        while not scanner.cancelled:
            await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 5)

    scan = await store.get(scan_id=stolen.scan_id)
    assert scan.status == ScanStatus.RUNNING
    assert scan.lease_owner == "thief"
    assert sum(worker.counts.values()) == 0


async def test_a_second_stop_skips_the_drain(store: RecordingStore) -> None:
    cfg = settings(shutdown_seconds=30.0)
    registry, scanner = scripted_registry(cfg)
    created = await store.create(scan=new_scan(block=True))
    worker = Worker(store, registry, cfg)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(scanner.started.wait(), 5)

    worker.stop()
    await asyncio.sleep(0.05)
    assert not running.done()  # draining: waiting for the blocked scan
    worker.stop()
    await asyncio.wait_for(running, 2)

    scan = await store.get(scan_id=created.scan.scan_id)
    assert scan.status == ScanStatus.ACCEPTED
    assert scan.history[-1].outcome == Outcome.RELEASED


async def test_cancelling_run_releases_what_it_holds(store: RecordingStore) -> None:
    cfg = settings(shutdown_seconds=30.0)
    registry, scanner = scripted_registry(cfg)
    created = await store.create(scan=new_scan(block=True))
    running = asyncio.create_task(Worker(store, registry, cfg).run())
    await asyncio.wait_for(scanner.started.wait(), 5)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 2)

    assert (await store.get(scan_id=created.scan.scan_id)).status == ScanStatus.ACCEPTED


async def test_a_result_that_is_not_a_json_object_is_an_error(store: RecordingStore) -> None:
    cfg = settings()
    bad = [await store.create(scan=new_scan(bad_result=kind)) for kind in ("object", "list")]
    good = await store.create(scan=new_scan())

    await asyncio.wait_for(Worker(store, scripted_registry(cfg)[0], cfg, burst=True).run(), 5)

    for created in bad:
        scan = await store.get(scan_id=created.scan.scan_id)
        assert scan.status == ScanStatus.ERROR
        assert scan.error is not None and "scanner scripted returned an invalid result" in scan.error
    assert (await store.get(scan_id=good.scan.scan_id)).status == ScanStatus.COMPLETE


class RefusingStore(RecordingStore):
    """Refuses (as a bug or bad data would, not an outage) any batch that completes one chosen scan."""

    refused: str = ""

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        if any(f.lease.scan_id == self.refused and f.outcome == Outcome.COMPLETE for f in finishes):
            raise ValueError("cannot store this result")
        return await super().finish(finishes=finishes)


async def test_an_outcome_the_store_refuses_does_not_block_the_others() -> None:
    cfg = settings(concurrency=10)
    async with RefusingStore(f"memory://{uuid.uuid4()}") as store:
        created = await store.create_many(scans=[new_scan() for _ in range(10)])
        store.refused = created[3].scan.scan_id

        await asyncio.wait_for(Worker(store, scripted_registry(cfg)[0], cfg, burst=True).run(), 5)

        scans = [await store.get(scan_id=c.scan.scan_id) for c in created]
    assert [s.status for s in scans] == [ScanStatus.COMPLETE] * 3 + [ScanStatus.ERROR] + [ScanStatus.COMPLETE] * 6
    assert scans[3].error == "the store refused the result"


def test_worker_id_names_host_and_process() -> None:
    host, pid, suffix = make_worker_id().rsplit(":", 2)
    assert host == socket.gethostname()
    assert pid == str(os.getpid())
    assert len(suffix) == 6
    assert make_worker_id() != make_worker_id()


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0), (10_000, 30.0)]:
        delays = [backoff_delay(failures, base_s=1.0, max_s=30.0) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # uses the whole range
        assert min(delays) < ceiling * 0.2


def test_backoff_without_full_jitter_waits_at_least_half() -> None:
    delays = [backoff_delay(3, base_s=1.0, max_s=30.0, full_jitter=False) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)


async def test_metrics_count_claims_outcomes_and_run_times(store: RecordingStore) -> None:
    cfg = settings()
    registry = make_registry(process_metrics=False)
    worker = Worker(store, scripted_registry(cfg)[0], cfg, burst=True, worker_id="w-m")
    worker.metrics = WorkerMetrics(registry, worker_id="w-m", in_flight=lambda: worker.running)
    await store.create_many(scans=[new_scan() for _ in range(3)] + [new_scan(fail="permanent")])

    await asyncio.wait_for(worker.run(), 5)

    text = generate_latest(registry).decode()
    assert sample_value(text, "scanq_scans_claimed_total") == 4
    assert sample_value(text, "scanq_scans_finished_total", {"status": "Complete"}) == 3
    assert sample_value(text, "scanq_scans_finished_total", {"status": "Error"}) == 1
    assert sample_value(text, "scanq_scan_run_seconds_count") == 4
    assert sample_value(text, "scanq_scans_in_flight", {"worker": "w-m"}) == 0
