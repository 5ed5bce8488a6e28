"""Start and stop real scanq processes (``python -m scanq ingest|status|worker``) and the bare baseline app.

Settings go through ``SCANQ_*`` environment variables (every ``Settings``
field has one), so the harness depends only on the documented configuration,
not on flag spellings. Each process logs to its own file under the run's
work directory (a pipe nobody reads would block it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0
READY_POLL_S = 0.05
STOP_TIMEOUT_S = 20.0
CHILDREN_READY_TIMEOUT_S = 60.0
PROFILER_STOP_TIMEOUT_S = 20.0
PROFILE_RATE_HZ = 250
# Set (to a directory) to record every scanq process the harness starts with py-spy (``--profile DIR``).
PROFILE_DIR_ENV = "BENCH_PROFILE_DIR"
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(slots=True)
class Process:
    """One child process the harness started; ``stop`` ends it (SIGTERM, then SIGKILL)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    started_at: float = field(default_factory=time.time)
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_bytes(self) -> int:
        """Resident set size now (from ``/proc``), 0 once the process is gone."""
        try:
            with open(f"/proc/{self.pid}/statm") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE_BYTES
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return 0

    def cpu_seconds(self) -> float:
        """CPU time used so far, user + system, all threads (from ``/proc``), 0 once the process is gone.

        Unlike wall-clock rates, this hardly moves when other processes load the machine.
        """
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0.0
        # Fields 14 and 15 of proc(5) (utime, stime), counted from the state field (3) after the name.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        """Raise with the end of its log if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}; log tail:\n{self.log_tail()}")

    async def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; SIGKILL after ``timeout_s``. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.popen.poll() is None:
                logger.warning("%s did not stop within %.0fs: killing it", self.name, timeout_s)
                self.popen.kill()
        code = self.popen.wait()
        if self.profiler is not None:
            # py-spy writes its file once the target is gone.
            deadline = time.monotonic() + PROFILER_STOP_TIMEOUT_S
            while self.profiler.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.profiler.poll() is None:
                self.profiler.send_signal(signal.SIGINT)
        return code


def _spawn(
    name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path, port: int | None, source: Path | None = None
) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("SCANQ_")}
    imports = str(source) if source is not None else child_env.get("PYTHONPATH", "")
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), imports]))
    child_env.update(env)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv, env=child_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT
        )
    logger.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
    return Process(name=name, popen=popen, log_path=log_path, port=port)


def start_scanq(
    role: str,
    *,
    database_url: str,
    log_dir: Path,
    settings: Mapping[str, str] | None = None,
    port: int | None = None,
    source: Path | None = None,
) -> Process:
    """Start ``python -m scanq ROLE`` with ``SCANQ_DATABASE_URL`` and extra ``SCANQ_*`` settings.

    Args:
        role: ``ingest``, ``status`` or ``worker``.
        settings: setting name (``concurrency``) to value, passed as ``SCANQ_CONCURRENCY``.
        port: for ingest/status, the port to listen on (a free one by default).
        source: import scanq from this ``src`` directory instead (an A/B's other version); the harness's
            own ``bench`` package stays first.
    """
    env = {"SCANQ_DATABASE_URL": database_url, "SCANQ_LOG_LEVEL": "WARNING"}
    if role in ("ingest", "status"):
        port = port or free_port()
        env[f"SCANQ_{role.upper()}_PORT"] = str(port)
        env["SCANQ_HOST"] = "127.0.0.1"
    for name, value in (settings or {}).items():
        env[f"SCANQ_{name.upper()}"] = value
    process = _spawn(role, [sys.executable, "-m", "scanq", role], env=env, log_dir=log_dir, port=port, source=source)
    profile_dir = os.environ.get(PROFILE_DIR_ENV)
    if profile_dir:
        process.profiler = _attach_profiler(process, Path(profile_dir))
    return process


def start_program(name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path) -> Process:
    """Start another program as the scanq processes are (own log file, no ``SCANQ_*``; py-spy with ``--profile``).

    For the other queues' workers that the ``peers`` scenario measures scanq against.
    """
    process = _spawn(name, argv, env=env, log_dir=log_dir, port=None)
    profile_dir = os.environ.get(PROFILE_DIR_ENV)
    if profile_dir:
        process.profiler = _attach_profiler(process, Path(profile_dir))
    return process


async def wait_children_started(process: Process, *, service: str, count: int) -> None:
    """Wait until ``count`` children of a ``--processes N`` service logged that their app started.

    They then accept on the shared socket; a load generator opens its connections once, at its start, so a
    child still starting then would get none of them for the whole run. The service must log at INFO.
    """
    deadline = time.monotonic() + CHILDREN_READY_TIMEOUT_S
    wanted = {f"[{service}-{n}" for n in range(1, count + 1)}
    while True:
        process.check_alive()
        lines = process.log_tail(lines=10_000).splitlines()
        if {line.split("]", 1)[0] for line in lines if "Application startup complete" in line} >= wanted:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service} children not started after {CHILDREN_READY_TIMEOUT_S:.0f}s:\n{lines[-20:]}")
        await asyncio.sleep(0.1)


def children_cpu_s(parent: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each child of ``parent`` (Linux ``/proc``)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return found


def py_spy_path() -> str | None:
    """py-spy beside this Python (the venv's), else on the PATH; None when it is not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def use_profiler(directory: Path) -> None:
    """Record every scanq process started from now on with py-spy into ``directory`` (``--profile``)."""
    if py_spy_path() is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    os.environ[PROFILE_DIR_ENV] = str(directory.resolve())


def _attach_profiler(process: Process, directory: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` the process until it exits, as collapsed stacks (``bench.profiles`` summarises them)."""
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{process.name}-{process.pid}.txt"
    argv = [py_spy_path() or "py-spy", "record", "--pid", str(process.pid), "--rate", str(PROFILE_RATE_HZ)]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking"]
    with open(directory / f"{process.name}-{process.pid}.log", "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def start_bare_app(*, log_dir: Path) -> Process:
    """The baseline: ``bench.bareapp`` on one uvicorn process with uvloop and httptools."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bareapp:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return _spawn("bare", argv, env={}, log_dir=log_dir, port=port)


async def wait_http_ready(process: Process, *, path: str = "/healthz", timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until ``GET path`` on the process's port answers 200 (raise if it exits or times out)."""
    assert process.port is not None
    deadline = time.monotonic() + timeout_s
    while True:
        process.check_alive()
        if await _get_status(process.port, path) == 200:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.name} not ready after {timeout_s:.0f}s; log tail:\n{process.log_tail()}")
        await asyncio.sleep(READY_POLL_S)


async def _get_status(port: int, path: str) -> int | None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5.0)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()


async def stop_all(processes: list[Process]) -> None:
    """Stop every process (in parallel), ignoring ones already gone."""
    await asyncio.gather(*(process.stop() for process in processes), return_exceptions=True)


async def run_loadgen(
    *,
    port: int,
    method: str = "GET",
    paths: list[str] | None = None,
    body: bytes = b"",
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
    headers: Sequence[str] = (),
) -> dict[str, object]:
    """Run ``bench.loadgen`` in its own process against ``port`` and return its JSON result.

    ``headers``: extra ``Name: value`` lines sent with every request (an ``Authorization`` header).
    """
    import json

    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(port),
        "--method",
        method,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration_s),
        "--warmup",
        str(warmup_s),
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = f"{int(time.time() * 1e6)}"
    paths = paths or ["/"]
    paths_file = workdir / f"paths-{stamp}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    argv += ["--paths-file", str(paths_file)]
    for header in headers:
        argv += ["--header", header]
    if body:
        body_file = workdir / f"body-{stamp}.json"
        body_file.write_bytes(body)
        argv += ["--body-file", str(body_file)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, object] = json.loads(stdout)
    return result
