"""The benchmark harness runs end to end (tiny sizes, SQLite); no timing is asserted: benchmarks are not CI tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import StartPython

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 50


@pytest.mark.slow
def test_quick_run_writes_the_report(tmp_path: Path, start_python: StartPython) -> None:
    out = tmp_path / "bench.json"
    # The bench starts worker processes of its own: start_python kills its whole process group at teardown.
    bench = start_python(
        "-m", "bench", "--db", "sqlite", "--quick", "--scenarios", "drain,status", "--json", str(out), cwd=REPO_ROOT
    )
    stdout, stderr = bench.communicate(timeout=SMOKE_TIMEOUT_S)
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == "sqlite"
    assert report["failed"] == {}
    assert set(report["scenarios"]) == {"drain", "status"}
    drain = report["scenarios"]["drain"]
    for workers in (1, 2):
        run = drain[f"workers_{workers}"]
        assert run["is_verified"], run
        assert run["statuses"] == {"Complete": drain["scans"]}
        assert run["rate_per_s"] > 0
    status = report["scenarios"]["status"]["at_2000"]
    for name in ("by_id", "list", "stats"):
        assert status[name]["requests"] > 0
        assert status[name]["errors"] == 0, status[name]
    assert {target["target"] for target in report["targets"]} >= {"drain 1 worker/s", "1M by id p99"}
    assert "| drain |" in stdout
