"""The release build: ``python -m build`` makes an sdist and a wheel a user can pip install and run.

The wheel goes into a fresh virtual environment in ``tmp_path``, outside the
repository, with its dependencies from the lock (requirements/runtime.txt);
then its own ``scanq`` runs one scan end to end and stops on SIGTERM.
"""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Spawn, child_pids, cmdline, free_port, wait_http_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = importlib.metadata.version("scanq")
# Files the package reads at run time that are not Python modules.
DATA_FILES = (
    "scanq/py.typed",
    "scanq/api/static/dashboard.html",
    "scanq/api/static/dashboard.css",
    "scanq/api/static/dashboard.js",
    "scanq/api/static/dashboard-common.js",
    "scanq/api/static/dashboard-stream.js",
    "scanq/api/static/dashboard-detail.js",
    "scanq/api/static/dashboard-chart.js",
    "scanq/store/postgres/sql/0001_initial.sql",
    "scanq/store/postgres/sql/queries.sql",
)
SCAN_DEADLINE_S = 20.0
STOP_WITHIN_S = 10.0


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a command to completion; fail with its output if it fails."""
    done = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of this checkout: the sdist, and the wheel built from that sdist."""
    outdir = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", outdir, ROOT)
    return outdir


def test_the_sdist_and_the_wheel_carry_the_data_files(dist: Path) -> None:
    [wheel] = dist.glob(f"scanq-{VERSION}-py3-none-any.whl")
    [sdist] = dist.glob(f"scanq-{VERSION}.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = {name.removeprefix(f"scanq-{VERSION}/") for name in archive.getnames()}
    assert [name for name in DATA_FILES if name not in in_wheel] == []
    assert [name for name in DATA_FILES if f"src/{name}" not in in_sdist] == []
    assert {"pyproject.toml", "README.md", "requirements/runtime.txt"} <= in_sdist
    entry_points = zipfile.ZipFile(wheel).read(f"scanq-{VERSION}.dist-info/entry_points.txt").decode()
    assert "scanq = scanq.cli:main" in entry_points


def test_the_installed_wheel_runs_a_scan_and_stops_on_sigterm(dist: Path, tmp_path: Path, spawn: Spawn) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, scanq = venv / "bin" / "python", venv / "bin" / "scanq"
    run(python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", ROOT / "requirements" / "runtime.txt")
    [wheel] = dist.glob("*.whl")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel)

    assert run(scanq, "--version", cwd=tmp_path) == f"scanq {VERSION}\n"
    where = run(python, "-c", "import scanq; print(scanq.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not this checkout's

    ingest_port, status_port = free_port(), free_port()
    ingest, status = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    up = spawn(
        "up",
        "--database-url",
        f"sqlite:///{tmp_path / 'scanq.db'}",
        "--ingest-port",
        str(ingest_port),
        "--status-port",
        str(status_port),
        "--workers",
        "1",
        "--mock-min-sleep",
        "0",
        "--mock-max-sleep",
        "0",
        "--mock-failure-rate",
        "0",
        "--shutdown-seconds",
        "1",
        program=[str(scanq)],
        cwd=tmp_path,
    )
    wait_http_ready(f"{ingest}/readyz", process=up)
    wait_http_ready(f"{status}/readyz", process=up)
    children = [cmdline(pid) for pid in child_pids(up.pid)]
    assert children and all(line.startswith(str(python)) for line in children), children

    with httpx.Client(timeout=10.0) as client:
        answer = client.post(f"{ingest}/scans", json={"target": "example.com"})
        assert answer.status_code == 202, answer.text
        scan_id = answer.json()["scan_id"]
        deadline = time.monotonic() + SCAN_DEADLINE_S
        while (scan := client.get(f"{status}/scans/{scan_id}").json())["status"] != "Complete":
            assert scan["status"] in ("Accepted", "Running"), scan
            assert time.monotonic() < deadline, scan
            time.sleep(0.1)
        # The dashboard and its assets come from the wheel's data files.
        page, script = client.get(f"{status}/dashboard"), client.get(f"{status}/static/dashboard.js")
        assert (page.status_code, script.status_code) == (200, 200)
        assert "<html" in page.text.lower()

    up.signal(signal.SIGTERM)
    assert up.wait(STOP_WITHIN_S) == 0, up.output()
