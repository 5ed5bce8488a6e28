"""Real ``python -m scanq …`` processes for acceptance tests, always killed at teardown.

``spawn`` starts one (output to a log file in ``tmp_path``, so a chatty child
never blocks on a full pipe); at teardown every process still alive gets
SIGTERM, then SIGKILL, as does anything left in its process group.
``start_python`` does the same for a plain ``python ARGS…`` with text pipes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanq.config import setting_specs
from scanq.supervisor import SUPERVISOR_PID_ENV

TERM_TIMEOUT_S = 5.0
# A generous ceiling on a clean exit after a signal (a process slow to stop on a loaded machine is not a bug).
EXIT_WITHIN_S = 20.0
READY_TIMEOUT_S = 20.0


@dataclass
class ScanqProcess:
    """One started ``python -m scanq …``."""

    args: tuple[str, ...]
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: signal.Signals) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{' '.join(self.args)} still running after {timeout_s}s:\n{self.output()}") from None

    def wait_for_output(self, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``text`` appears in the process output; fail with the output if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"{' '.join(self.args)} exited with {self.popen.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen within {timeout_s}s:\n{self.output()}")
            time.sleep(0.05)


Spawn = Callable[..., ScanqProcess]


class Spawner:
    """Starts processes logging into ``directory``; ``stop_all`` kills every one of them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ScanqProcess] = []

    def start(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        program: Sequence[str] = (sys.executable, "-m", "scanq"),
        cwd: Path | None = None,
    ) -> ScanqProcess:
        """Start ``python -m scanq ARGS…`` (or another ``program``, in ``cwd``) with extra environment variables."""
        log_path = self.directory / f"scanq-{len(self.started)}-{args[0] if args else 'help'}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*program, *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**_without_settings(os.environ), "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        process = ScanqProcess(args=args, popen=popen, log_path=log_path)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + TERM_TIMEOUT_S
        for process in self.started:
            try:
                process.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.popen.wait()
        # Children of a `scanq up` live in sessions of their own; should one have outlived its supervisor, kill it.
        for pid in supervised_by({process.pid for process in self.started}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``python -m scanq ARGS…`` (``Spawner.start``); every process started is killed at teardown."""
    spawner = Spawner(tmp_path)
    yield spawner.start
    spawner.stop_all()


@pytest.fixture(scope="module")
def spawn_for_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawn]:
    """``spawn`` for processes the tests of one module share (killed after the module's last test)."""
    spawner = Spawner(tmp_path_factory.mktemp("processes"))
    yield spawner.start
    spawner.stop_all()


def _without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    # A module's processes start before the per-test `clean_environ`: drop the developer's settings here too,
    # the original names (INGEST_PORT, MIN_SLEEP …) included.
    original = {alias for spec in setting_specs() for alias in spec.aliases}
    return {
        k: v
        for k, v in environ.items()
        if k not in original and (not k.startswith("SCANQ_") or k.startswith("SCANQ_TEST_"))
    }


StartPython = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start_python() -> Iterator[StartPython]:
    """Start ``python ARGS…`` (text pipes) in a session of its own; at teardown, whatever happened, the process
    and everything it started get SIGTERM, then SIGKILL."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **popen_options: Any) -> subprocess.Popen[str]:
        popen = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **popen_options,
        )
        started.append(popen)
        return popen

    yield start
    for popen in started:
        try:
            os.killpg(popen.pid, signal.SIGTERM)  # the group: what it started holds its pipes open too
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + TERM_TIMEOUT_S
    for popen in started:
        try:
            popen.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.communicate()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ready(url: str, *, process: ScanqProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``url`` until it answers 200; fail with the process output if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} never became ready:\n{process.output()}")
        time.sleep(0.1)


def child_pids(parent: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.append(int(entry.name))
    return found


def supervised_by(supervisors: set[int]) -> list[int]:
    """Processes started by one of these ``scanq up`` pids (their ``SCANQ_SUPERVISOR_PID``), wherever they are now."""
    wanted = {f"{SUPERVISOR_PID_ENV}={pid}".encode() for pid in supervisors}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if environ & wanted:
            found.append(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
