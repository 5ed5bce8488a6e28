"""`scanq up --metrics-port` and `--log-format json` as an operator runs them: real processes, real scrapes.

Two workers serve their metrics on consecutive ports; after a known set of
scans the counters summed over the workers, and the ingest and status
counters, match it exactly. Every output line is JSON, and the failed scans'
lines carry their scan ID, worker and attempt.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
import pytest

from tests.acceptance.conftest import EXIT_WITHIN_S, Spawn, free_port, wait_http_ready
from tests.prometheus import sample_sum, sample_value

pytestmark = pytest.mark.slow

WORKERS = 2
GOOD = 16
FAILING = 4
DEADLINE_S = 30.0


def free_port_pair() -> int:
    """A port P such that P and P + 1 are both free (each worker of `scanq up` takes base + N - 1)."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two consecutive free ports")


def wait_all_finished(client: httpx.Client, status: str, total: int) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        counts: dict[str, int] = client.get(f"{status}/stats").json()["counts"]
        if counts["Complete"] + counts["Error"] == total:
            return counts
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)


def test_up_serves_each_workers_metrics_and_json_logs_carry_scan_ids(tmp_path, spawn: Spawn) -> None:
    ingest_port, status_port, metrics_port = free_port(), free_port(), free_port_pair()
    env = {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_MOCK_MIN_SLEEP": "0.01",
        "SCANQ_MOCK_MAX_SLEEP": "0.05",
        "SCANQ_MOCK_FAILURE_RATE": "0",
        "SCANQ_SHUTDOWN_SECONDS": "1",
    }
    up = spawn("up", "--workers", str(WORKERS), "--metrics-port", str(metrics_port), "--log-format", "json", env=env)
    ingest, status = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    worker_urls = [f"http://127.0.0.1:{metrics_port + n}/metrics" for n in range(WORKERS)]
    for url in (f"{ingest}/readyz", f"{status}/readyz", *worker_urls):
        wait_http_ready(url, process=up)

    with httpx.Client(timeout=10.0) as client:
        good = client.post(f"{ingest}/scans/batch", json={"scans": [{}] * GOOD})
        assert good.status_code == 202
        failing = [
            client.post(f"{ingest}/scans", json={"options": {"failure_rate": 1}}).json()["scan_id"]
            for _ in range(FAILING)
        ]
        counts = wait_all_finished(client, status, GOOD + FAILING)
        assert counts["Complete"] == GOOD and counts["Error"] == FAILING
        workers = [client.get(url).text for url in worker_urls]
        ingest_text = client.get(f"{ingest}/metrics").text
        status_text = client.get(f"{status}/metrics").text

    def summed(name: str, labels: dict[str, str] | None = None) -> float:
        return sum(sample_sum(text, name, labels) for text in workers)

    assert summed("scanq_scans_claimed_total") == GOOD + FAILING
    assert summed("scanq_scans_finished_total", {"status": "Complete"}) == GOOD
    assert summed("scanq_scans_finished_total", {"status": "Error"}) == FAILING
    assert summed("scanq_scan_run_seconds_count") == GOOD + FAILING
    assert summed("scanq_scan_pickup_seconds_count") == GOOD + FAILING
    assert summed("scanq_scans_in_flight") == 0
    assert all(sample_value(text, "process_resident_memory_bytes") for text in workers)
    assert sample_value(ingest_text, "scanq_scans_submitted_total") == GOOD + FAILING
    assert sample_value(status_text, "scanq_scans", {"status": "Complete"}) == GOOD
    assert sample_value(status_text, "scanq_queue_depth") == 0
    latency = {"method": "GET", "route": "/stats", "code": "200"}
    assert (sample_value(status_text, "scanq_http_request_duration_seconds_count", latency) or 0) >= 1

    entries = [json.loads(line) for line in up.output().splitlines()]
    for scan_id in failing:
        [entry] = [e for e in entries if e.get("scan_id") == scan_id and e.get("logger") == "scanq.worker"]
        assert entry["level"] == "WARNING" and entry["attempt"] == 1
        assert entry["process"].startswith("worker-") and entry["worker"]


def test_stats_watch_refreshes_until_ctrl_c(tmp_path, spawn: Spawn) -> None:
    status_port = free_port()
    status_url = f"http://127.0.0.1:{status_port}"
    env = {"SCANQ_DATABASE_URL": f"sqlite:///{tmp_path / 'scanq.db'}", "SCANQ_STATUS_PORT": str(status_port)}
    wait_http_ready(f"{status_url}/readyz", process=spawn("status", env=env))

    watching = spawn("stats", "--watch", "0.2", "--status-url", status_url)
    deadline = time.monotonic() + DEADLINE_S
    # Four headers: the first three frames are complete (the fourth may be cut short by Ctrl-C).
    while watching.output().count("scanq stats ") < 4:
        assert watching.popen.poll() is None and time.monotonic() < deadline, watching.output()
        time.sleep(0.05)
    watching.signal(signal.SIGINT)
    assert watching.wait(EXIT_WITHIN_S) == 0, watching.output()
    frames = [frame for frame in watching.output().split("\n\n") if frame.strip()]
    assert len(frames) >= 3
    assert all("Accepted" in frame and "Complete" in frame for frame in frames[:3])
