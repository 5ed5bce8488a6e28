"""The soak's quick form: 20,000 no-op scans through real processes with retention of seconds, every one found again.

``python -m bench --quick --scenarios soak`` starts ingest, status and two
workers on SQLite, submits over HTTP at a steady rate and lets retention prune
(and archive) behind it. Only correctness is asserted: every acknowledged scan
is found Complete in the store or in the retention archive, none completed
twice, and every series was recorded. No timing is asserted: the figures of a
quick run on a shared machine mean nothing (the full soak's are in docs/soak.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import StartPython

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK_SCANS = 20_000
RUN_TIMEOUT_S = 400

pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + 30)]


def test_quick_soak_loses_no_acknowledged_scan_and_completes_none_twice(
    tmp_path: Path, start_python: StartPython
) -> None:
    out = tmp_path / "soak.json"
    bench = start_python(
        "-m", "bench", "--db", "sqlite", "--quick", "--scenarios", "soak", "--json", str(out),
        "--workdir", str(tmp_path / "work"), cwd=REPO_ROOT,
    )  # fmt: skip
    stdout, stderr = bench.communicate(timeout=RUN_TIMEOUT_S)
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {}
    soak = report["scenarios"]["soak"]

    assert soak["scans"] == QUICK_SCANS
    assert soak["refused"] == 0
    checked = soak["verification"]
    assert checked["acknowledged"] == QUICK_SCANS
    assert checked["duplicate_acks"] == 0
    assert checked["lost"] == 0, checked["lost_examples"]
    assert checked["not_complete"] == {}
    assert checked["completed_twice"] == 0
    # Retention of seconds pruned behind the load, and every pruned scan is in the archive.
    assert soak["is_retention_set"] is True
    assert checked["in_archive"] > 0 and checked["archive_files"] > 0
    assert checked["in_store"] < QUICK_SCANS
    assert checked["in_store"] + checked["in_archive"] - checked["duplicate_copies"] >= QUICK_SCANS
    assert soak["is_correct"] is True and soak["passed"] is True

    # Every series was recorded in every interval (their values are not judged).
    samples = soak["samples"]
    assert len(samples) >= 3
    assert {s["phase"] for s in samples} == {"submit", "drain"}
    for sample in samples:
        for name in ("submit_ms", "pickup_ms", "by_id_ms", "list_ms", "stats_ms"):
            assert set(sample[name]) >= {"n", "p50_ms", "p99_ms"}, name
        assert sample["sizes"]["database_bytes"] > 0
        assert sample["sizes"]["table_bytes"] is not None  # dbstat
        assert set(sample["rss_mb"]) == {"ingest", "status", "worker1", "worker2"}
        assert all(mb > 0 for mb in sample["rss_mb"].values())
        assert "drain_per_s" in sample and "submit_per_s" in sample
    assert sum(s["submit_ms"]["n"] for s in samples) == QUICK_SCANS
    assert any(s["by_id_ms"]["n"] > 0 for s in samples) and any(s["pickup_ms"]["n"] > 0 for s in samples)
    assert "| soak |" in stdout
