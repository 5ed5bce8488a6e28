"""The benchmark harness runs end to end (tiny sizes); no timing is asserted: benchmarks are not CI tests.

The ``peers`` smoke drains through scanq (PostgreSQL and SQLite), pgqueuer and
procrastinate on the test session's PostgreSQL server, and checks that every
system finished every job. Without the ``peers`` extra it skips locally and
fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.acceptance.conftest import StartPython
from tests.servers.availability import is_ci
from tests.servers.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 50
PEERS_TIMEOUT_S = 240
PEER_PACKAGES = ("pgqueuer", "procrastinate")


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
    for name in ("by_id", "list", "stats", "by_id_64", "list_64", "by_id_64_x2", "list_64_x2"):
        assert status[name]["requests"] > 0
        assert status[name]["errors"] == 0, status[name]
    # wrk, the second judge of the 64-client reads, when it is installed (a quick run installs nothing).
    judged = [f"{name}_wrk" for name in ("by_id_64", "list_64", "by_id_64_x2", "list_64_x2")]
    if shutil.which("wrk") is None:
        assert not set(judged) & set(status) and "wrk unavailable" in stdout
    else:
        for name in judged:
            assert status[name]["requests"] > 0 and status[name]["errors"] == 0, status[name]
    assert {target["target"] for target in report["targets"]} >= {"drain 1 worker/s", "1M by id p99"}
    assert "| drain |" in stdout


@pytest.mark.slow
@pytest.mark.timeout(PEERS_TIMEOUT_S + 30)
def test_quick_peers_run_drains_every_system(
    tmp_path: Path, start_python: StartPython, postgres_server: PostgresServer
) -> None:
    _require_peer_packages()
    out = tmp_path / "bench.json"
    argv = ["-m", "bench", "--db", "sqlite", "--quick", "--scenarios", "peers", "--json", str(out)]
    bench = start_python(*argv, "--peers-db", postgres_server.admin_url, cwd=REPO_ROOT)
    stdout, stderr = bench.communicate(timeout=PEERS_TIMEOUT_S)
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {}
    peers = report["scenarios"]["peers"]
    assert peers["errors"] == []
    rows = {(row["system"], row["backend"]): row for row in peers["rows"]}
    assert set(rows) == {
        ("scanq", "postgres"),
        ("scanq", "sqlite"),
        ("pgqueuer", "postgres"),
        ("procrastinate", "postgres"),
    }
    for row in rows.values():
        (run,) = row["runs"]
        assert run["is_verified"], run
        assert run["rate_per_s"] > 0, run
    assert rows["scanq", "postgres"]["runs"][0]["verification"]["statuses"] == {"Complete": peers["jobs"]}
    assert rows["pgqueuer", "postgres"]["runs"][0]["verification"]["left_in_queue"] == 0
    assert rows["procrastinate", "postgres"]["runs"][0]["verification"]["jobs"] == {"succeeded": peers["jobs"]}
    assert peers["scanq_postgres_vs_pgqueuer"] is not None and peers["scanq_sqlite_vs_pgqueuer"] is not None
    assert {target["target"] for target in report["targets"]} >= {"peers PG/pgqueuer", "peers SQLite/pgqueuer"}
    assert "| peers |" in stdout and "| pgqueuer | batch 100, PostgreSQL |" in stdout


def _require_peer_packages() -> None:
    missing = [name for name in PEER_PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"the peers extra is not installed ({', '.join(missing)}): pip install -e '.[peers]'"
    if is_ci():
        pytest.fail(f"{reason}; CI must drain through every peer", pytrace=False)
    pytest.skip(reason)
