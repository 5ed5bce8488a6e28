"""The ingest scenario runs end to end (tiny sizes, SQLite): one and two ingest processes, and wrk when installed.

No timing is asserted: benchmarks are not CI tests. Without wrk the report must say so instead of failing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.acceptance.conftest import StartPython

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 150


@pytest.mark.slow
@pytest.mark.timeout(SMOKE_TIMEOUT_S + 30)
def test_quick_ingest_run_measures_two_processes_and_asks_wrk(tmp_path: Path, start_python: StartPython) -> None:
    out = tmp_path / "bench.json"
    # The bench starts processes of its own: start_python kills its whole process group at teardown.
    bench = start_python(
        "-m", "bench", "--db", "sqlite", "--quick", "--scenarios", "ingest", "--json", str(out), cwd=REPO_ROOT
    )
    stdout, stderr = bench.communicate(timeout=SMOKE_TIMEOUT_S)
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {}
    ingest = report["scenarios"]["ingest"]
    assert ingest["is_durable_count_ok"], ingest
    two = ingest["processes_2"]
    assert two["single"]["requests"] > 0 and two["single"]["errors"] == 0, two
    assert two["is_durable_count_ok"], two
    assert len(two["children_cpu_s"]) == 2, two  # both children ran
    wrk = ingest["wrk"]
    if shutil.which("wrk") is None:
        assert wrk["available"] is False and "wrk unavailable" in stdout
    else:
        assert wrk["available"] is True, wrk
        for run in ("bare", "single", "processes_2"):
            assert wrk[run]["requests"] > 0 and wrk[run]["errors"] == 0, wrk[run]
    assert "| ingest | 2 ingest processes / 1" in stdout
