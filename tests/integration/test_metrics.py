"""After a known set of scans, every counter and histogram read back from the /metrics endpoints matches.

Ingest and status run in-process over one SQLite file; the worker runs in
burst mode and serves its registry on a real port, scraped over HTTP as
Prometheus would. The worker's JSON log lines carry the scan ID. ``serve_metrics`` alone, on its
own port, is checked here too.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scanq.config import PluginSettings
from scanq.logs import JsonFormatter
from scanq.metrics import WorkerMetrics, make_registry, serve_metrics
from scanq.models import Outcome
from scanq.scanners import ScannerRegistry
from scanq.scanners.mock import MockSettings
from scanq.worker import Worker
from tests.integration.apps import Services, services
from tests.prometheus import sample_value

SETTINGS: dict[str, Any] = {
    "plugins": PluginSettings(MockSettings(min_sleep=0.0, max_sleep=0.01, failure_rate=0.0)),
    "max_attempts": 2,
    "scan_timeout_seconds": 0.3,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.02,
    "poll_seconds": 0.2,
    "shutdown_seconds": 0.5,
}
SINGLE = 6
BATCH = 4
# Sleeps past the scan timeout: a transient failure, retried once, then Error (max_attempts 2).
SLOW = {"options": {"min_sleep": 5, "max_sleep": 5}}
FAILING = {"options": {"failure_rate": 1}}
COMPLETE = SINGLE + 1 + BATCH  # the singles, the idempotent one, the batch


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything scanq logs during the test, as the JSON lines ``--log-format json`` prints."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("scanq")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def submit_known_scans(svc: Services) -> dict[str, str]:
    """Queue the scans this test counts on; return the ids of the special ones."""
    for _ in range(SINGLE):
        assert (await svc.ingest.post("/scans", json={})).status_code == 202
    for expected in (202, 200):  # the replay answers the same scan and is not a new submission
        answer = await svc.ingest.post("/scans", json={}, headers={"Idempotency-Key": "order-1"})
        assert answer.status_code == expected
    batch = await svc.ingest.post("/scans/batch", json={"scans": [{}] * BATCH})
    assert batch.status_code == 202
    ids = {}
    for name, body in (("failing", FAILING), ("slow", SLOW), ("cancelled", {})):
        answer = await svc.ingest.post("/scans", json=body)
        assert answer.status_code == 202
        ids[name] = answer.json()["scan_id"]
    assert (await svc.ingest.post(f"/scans/{ids['cancelled']}/cancel")).status_code == 200
    return ids


@pytest.mark.slow
async def test_counters_and_histograms_match_a_known_number_of_scans(sqlite_url: str, json_log: io.StringIO) -> None:
    async with services(sqlite_url, **SETTINGS) as svc:
        ids = await submit_known_scans(svc)

        registry = make_registry(process_metrics=False)
        worker_id = "metrics-test-worker"
        metrics = WorkerMetrics(registry, worker_id=worker_id, in_flight=lambda: worker.running)
        worker = Worker(
            svc.store, ScannerRegistry(svc.settings), svc.settings, worker_id=worker_id, burst=True, metrics=metrics
        )
        async with serve_metrics(registry, host="127.0.0.1", port=0) as port:
            await worker.run()
            async with httpx.AsyncClient() as client:
                worker_text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        ingest_text = (await svc.ingest.get("/metrics")).text
        status_text = (await svc.status.get("/metrics")).text

    # The worker: every claim, outcome and attempt.
    first_attempts = COMPLETE + 2  # + failing + slow
    assert sample_value(worker_text, "scanq_scans_claimed_total") == first_attempts + 1  # slow ran twice
    assert sample_value(worker_text, "scanq_scans_finished_total", {"status": "Complete"}) == COMPLETE
    assert sample_value(worker_text, "scanq_scans_finished_total", {"status": "Error"}) == 2
    assert sample_value(worker_text, "scanq_scans_retried_total") == 1
    assert sample_value(worker_text, "scanq_scan_run_seconds_count") == first_attempts + 1
    assert sample_value(worker_text, "scanq_scan_pickup_seconds_count") == first_attempts
    assert sample_value(worker_text, "scanq_scans_in_flight", {"worker": worker_id}) == 0
    assert sample_value(worker_text, "scanq_scans_lease_expired_total") == 0

    # Ingest: new scans (not the replay), accepted cancels, and the latency of each route by code.
    assert sample_value(ingest_text, "scanq_scans_submitted_total") == COMPLETE + 3
    assert sample_value(ingest_text, "scanq_scans_cancelled_total") == 1
    latency = "scanq_http_request_duration_seconds_count"
    assert sample_value(ingest_text, latency, {"method": "POST", "route": "/scans", "code": "202"}) == SINGLE + 4
    assert sample_value(ingest_text, latency, {"method": "POST", "route": "/scans", "code": "200"}) == 1
    assert sample_value(ingest_text, latency, {"method": "POST", "route": "/scans/batch", "code": "202"}) == 1
    assert (
        sample_value(ingest_text, latency, {"method": "POST", "route": "/scans/{scan_id}/cancel", "code": "200"}) == 1
    )

    # Status: the store's counts, cached.
    assert sample_value(status_text, "scanq_scans", {"status": "Complete"}) == COMPLETE
    assert sample_value(status_text, "scanq_scans", {"status": "Error"}) == 2
    assert sample_value(status_text, "scanq_scans", {"status": "Cancelled"}) == 1
    assert sample_value(status_text, "scanq_queue_depth") == 0
    assert sample_value(status_text, "scanq_queue_oldest_age_seconds") == 0

    # Logs: one JSON object per line, the failed scans' lines carry their id, worker and attempt.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    failed = [line for line in lines if line.get("scan_id") == ids["failing"]]
    assert failed and failed[0]["worker"] == worker_id and failed[0]["attempt"] == 1
    assert failed[0]["level"] == "WARNING"
    retried = [line for line in lines if line.get("scan_id") == ids["slow"]]
    assert [line["attempt"] for line in retried] == [1, 2]


async def test_queue_metrics_show_waiting_scans(sqlite_url: str) -> None:
    async with services(sqlite_url, **SETTINGS) as svc:
        batch = await svc.ingest.post("/scans/batch", json={"scans": [{}] * 5})
        assert batch.status_code == 202
        text = (await svc.status.get("/metrics")).text
    assert sample_value(text, "scanq_queue_depth") == 5
    assert sample_value(text, "scanq_scans", {"status": "Accepted"}) == 5
    age = sample_value(text, "scanq_queue_oldest_age_seconds")
    assert age is not None and 0 <= age < 30


async def test_serve_metrics_answers_scrapes_on_its_own_port_and_frees_it() -> None:
    registry = make_registry(process_metrics=False)
    metrics = WorkerMetrics(registry, worker_id="w-9", in_flight=lambda: 3)
    metrics.record_finished(Outcome.COMPLETE)
    async with serve_metrics(registry, host="127.0.0.1", port=0) as port:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    assert sample_value(answer.text, "scanq_scans_in_flight", {"worker": "w-9"}) == 3
    assert sample_value(answer.text, "scanq_scans_finished_total", {"status": "Complete"}) == 1
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/metrics")
