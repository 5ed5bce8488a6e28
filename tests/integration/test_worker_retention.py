"""A worker started with --retention prunes finished scans on every store, and hands the role back when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from scanq.archive import read_archive
from scanq.config import Settings
from scanq.metrics import WorkerMetrics, make_registry
from scanq.models import ScanStatus
from scanq.store import Store, open_store
from scanq.store.base import RETENTION_ROLE
from scanq.worker import Worker
from tests.prometheus import sample_value
from tests.scripted import new_scan, scripted_registry

DEADLINE_S = 30.0
FAST: dict[str, Any] = {
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.1,
    "reaper_seconds": 0.1,
    "poll_seconds": 0.2,
    "shutdown_seconds": 0.3,
}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url) as opened:
        yield opened


@pytest.mark.slow
async def test_a_worker_with_retention_prunes_finished_scans_and_archives_them(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    cfg = Settings(
        database_url=database_url, retention=("Complete=1s",), retention_archive=str(tmp_path / "archive"), **FAST
    )
    registry = make_registry(process_metrics=False)
    created = await store.create_many(scans=[new_scan() for _ in range(12)])
    scanners, _ = scripted_registry(cfg)
    metrics = WorkerMetrics(registry, worker_id="retention-test", in_flight=lambda: 0)
    worker = Worker(store, scanners, cfg, worker_id="retention-test", metrics=metrics)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(DEADLINE_S):
            # Run to Complete, then pruned once a second old: the table ends empty.
            while sum((await store.stats()).counts.values()):
                await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(task, DEADLINE_S)

    scraped = generate_latest(registry).decode()
    assert sample_value(scraped, "scanq_scans_pruned_total", {"status": "Complete"}) == 12
    archived = [scan["scan_id"] for scan in read_archive(tmp_path / "archive")]
    assert sorted(archived) == sorted(c.scan.scan_id for c in created)
    assert (await store.stats()).counts == dict.fromkeys(ScanStatus, 0)
    # The stopped worker resigned: another takes the role at once.
    assert await store.lead(role=RETENTION_ROLE, owner="next", term_s=10)
