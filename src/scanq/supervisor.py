"""``scanq up``: run ingest, status and N workers as child processes on one machine, and stop them together.

Each child is its own OS process started as ``python -m scanq ingest|status|worker``
(so ``ps`` shows what it is and an operator can signal one), with every setting
passed through ``SCANQ_*`` environment variables. Its output lines are
prefixed with its name (``[worker-1] …``). A child that exits is restarted
with exponential backoff. SIGINT/SIGTERM stops all children: SIGTERM to each
child's process group, SIGKILL after ``shutdown_seconds`` plus a grace period;
a second signal kills at once.

With ``--ingest-processes N`` (N > 1) it binds the ingest port once and its N
ingest children (``ingest-1`` …) serve that socket (``api/listeners.py``); one
restarts while the others go on accepting. ``scanq ingest --processes N`` is
this supervisor with the ingest children only (``serve_ingest``).

No orphans if the supervisor itself dies (even by SIGKILL): each child is
started in its own session, so a terminal's Ctrl-C reaches only the supervisor
(which then stops every child once, gracefully), and the child asks the
kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)`` on Linux,
see ``follow_supervisor``; elsewhere a thread watches the parent pid).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from scanq.backoff import backoff_delay
from scanq.config import ENV_PREFIX, Settings, unknown_env_names
from scanq.exceptions import ConfigError, StartupError
from scanq.scanners.mock import MockSettings
from scanq.store import open_store

logger = logging.getLogger(__name__)

SUPERVISOR_PID_ENV = "SCANQ_SUPERVISOR_PID"
RESTART_BASE_S = 0.5
RESTART_MAX_S = 30.0
# A child that ran this long before exiting counts as healthy: its restart backoff starts over.
STABLE_AFTER_S = 30.0
KILL_GRACE_S = 3.0
LINE_LIMIT_BYTES = 1 << 20
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1
# How a child ends when asked to stop: cleanly, or by the SIGTERM/SIGINT it re-raises after a clean shutdown.
NORMAL_STOP_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


@dataclass(eq=False)
class _Child:
    name: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    shares_listeners: bool = False  # an ingest child of --ingest-processes N: serves the supervisor's socket
    process: asyncio.subprocess.Process | None = None
    last_line: bytes = b""  # its latest line of output: the reason, when it could not start


def settings_environ(settings: Settings) -> dict[str, str]:
    """Every setting as the ``SCANQ_*`` variable that reproduces it in a child process."""
    return settings.to_environ()


def inherited_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment as its children get it: without the ``SCANQ_*`` names that are no setting.

    The supervisor has warned about those once; each child would warn again.
    """
    unknown = set(unknown_env_names(environ))
    return {name: value for name, value in environ.items() if name not in unknown}


class Supervisor:
    """Starts, prefixes, restarts and stops the children of ``scanq up``.

    Args:
        settings: passed to every child through the environment; ``workers`` says how many workers,
            ``ingest_processes`` how many ingest processes.
        out: where prefixed child output and the start banner go (default: stdout).
        only_ingest: run the ingest processes only (``scanq ingest --processes N``), not status and workers.
    """

    def __init__(self, settings: Settings, *, out: BinaryIO | None = None, only_ingest: bool = False) -> None:
        self.settings = settings
        self._out = out if out is not None else sys.stdout.buffer
        self._name = "ingest" if only_ingest else "up"
        self._children = _ingest_children(settings)
        if not only_ingest:
            self._children += [
                _Child(name="status", command="status"),
                *(
                    _Child(name=f"worker-{n}", command="worker", env=_worker_env(settings, n))
                    for n in range(1, settings.workers + 1)
                ),
            ]
        self._shared_fds: list[int] = []  # the listening sockets of --ingest-processes N, bound by run()
        self._shared_env: dict[str, str] = {}
        self._stop_event = asyncio.Event()
        self._is_killing = False
        self._failure: str | None = None  # why a child could not start; `scanq up` then stops and fails
        self._environ = {
            **inherited_environ(os.environ),
            **settings_environ(settings),
            SUPERVISOR_PID_ENV: str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
        }

    def stop(self) -> None:
        """Stop every child (signal-handler safe); a second call kills them at once."""
        if self._stop_event.is_set():
            self._is_killing = True
            self._signal_all(signal.SIGKILL)
        self._stop_event.set()

    async def run(self) -> int:
        """Run until SIGINT/SIGTERM (or ``stop()``); return the exit code.

        Raise ``StartupError`` when the ingest port shared by ``ingest_processes`` > 1 cannot be bound.
        """
        from scanq.api.listeners import close, handoff_environ, listen_shared  # not in every worker: starlette

        await prepare_store(self.settings)
        listeners = []
        if any(child.shares_listeners for child in self._children):
            listeners = listen_shared(self.settings.host, self.settings.ingest_port)
            self._shared_fds, self._shared_env = [sock.fileno() for sock in listeners], handoff_environ(listeners)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        try:
            self._banner()
            supervisors = [asyncio.create_task(self._supervise(child)) for child in self._children]
            await self._stop_event.wait()
            self._emit(self._name, "stopping every process")
            await self._terminate_all()
            await asyncio.gather(*supervisors)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            close(listeners)
        if self._failure is not None:
            self._emit(self._name, f"stopped: {self._failure}", level="ERROR")
            return 1
        self._emit(self._name, "stopped")
        return 0

    def _banner(self) -> None:
        s = self.settings
        shared = f"; {s.ingest_processes} processes, one socket" if s.ingest_processes > 1 else ""
        if self._name == "ingest":
            self._emit("ingest", f"http://{s.host}:{s.ingest_port}{shared}; Ctrl-C stops them all")
            return
        self._emit("up", f"ingest  http://{s.host}:{s.ingest_port}   (GET / queues a scan{shared})")
        self._emit("up", f"status  http://{s.host}:{s.status_port}   (GET /<id>, /scans, /stats)")
        self._emit("up", f"workers {s.workers} x concurrency {s.concurrency}, store {_redact(s.database_url)}")
        mock = s.plugins[MockSettings]
        low, high, rate = mock.min_sleep, mock.max_sleep, mock.failure_rate
        self._emit(
            "up",
            f"mock scanner: sleeps {low:g}-{high:g} s, fails {rate:.0%} of scans "
            f"(MIN_SLEEP={low:g} MAX_SLEEP={high:g} CHANCE_OF_FAILURE={rate:g})",
        )
        if s.metrics_port:
            last = s.metrics_port + s.workers - 1
            self._emit("up", f"worker metrics http://{s.host}:{s.metrics_port}..{last}/metrics")
        self._emit("up", "Ctrl-C stops everything")

    async def _supervise(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stop_event.is_set():
            started = loop.time()
            shared = child.shares_listeners
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "scanq",
                    child.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**self._environ, **child.env, **(self._shared_env if shared else {})},
                    pass_fds=self._shared_fds if shared else (),
                    start_new_session=True,
                    limit=LINE_LIMIT_BYTES,
                )
            except OSError as exc:  # out of processes or memory: try again later, like a crash
                failures += 1
                delay = backoff_delay(failures, base_s=RESTART_BASE_S, max_s=RESTART_MAX_S, full_jitter=False)
                self._emit(self._name, f"cannot start {child.name}: {exc}; retrying in {delay:.1f}s")
                await _wait(self._stop_event, delay)
                continue
            child.process = process
            if self._stop_event.is_set():  # stopped while it was starting
                _signal_group(process, signal.SIGTERM)
            assert process.stdout is not None
            pump = asyncio.create_task(self._pump(child, process.stdout))
            code = await process.wait()
            await asyncio.wait([pump], timeout=KILL_GRACE_S)
            pump.cancel()
            if self._stop_event.is_set():
                self._emit(child.name, "stopped" if code in NORMAL_STOP_CODES else f"exited with code {code}")
                return
            if code == StartupError.exit_code:
                # Restarting cannot help (the port stays taken, the host stays unresolvable): stop everything.
                self._failure = f"{child.name} cannot start: {_reason(child.last_line)}"
                self._stop_event.set()
                return
            failures = 1 if loop.time() - started > STABLE_AFTER_S else failures + 1
            delay = backoff_delay(failures, base_s=RESTART_BASE_S, max_s=RESTART_MAX_S, full_jitter=False)
            self._emit(
                self._name, f"{child.name} (pid {process.pid}) exited with code {code}; restarting in {delay:.1f}s"
            )
            await _wait(self._stop_event, delay)

    async def _pump(self, child: _Child, reader: asyncio.StreamReader) -> None:
        is_json = self.settings.log_format == "json"
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line longer than LINE_LIMIT_BYTES: pass it on in pieces
                line = await reader.read(LINE_LIMIT_BYTES)
            if not line:
                return
            if line.strip():
                child.last_line = line
            self._write(label_line(child.name, line, is_json=is_json))

    async def _terminate_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        processes = [c.process for c in self._children if c.process is not None and c.process.returncode is None]
        if not processes:
            return
        waits = [asyncio.ensure_future(p.wait()) for p in processes]
        _, pending = await asyncio.wait(waits, timeout=self.settings.shutdown_seconds + KILL_GRACE_S)
        if pending:
            self._emit(self._name, f"{len(pending)} processes did not stop in time: killing them")
            self._signal_all(signal.SIGKILL)
            await asyncio.wait(pending)

    def _signal_all(self, signum: signal.Signals) -> None:
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                _signal_group(child.process, signum)

    def _emit(self, name: str, message: str, *, level: str = "INFO") -> None:
        if self.settings.log_format == "json":
            entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level}
            entry |= {"logger": __name__, "process": name, "message": message}
            self._write(json.dumps(entry).encode() + b"\n")
        else:
            self._write(f"[{name}] {message}\n".encode())

    def _write(self, data: bytes) -> None:
        try:
            self._out.write(data)
            self._out.flush()
        except (BrokenPipeError, ValueError):  # our own output is gone; keep supervising
            pass


def label_line(name: str, line: bytes, *, is_json: bool) -> bytes:
    """Mark one line of a child's output with the child's name, ending in a newline.

    Text lines get a ``[name] `` prefix. With ``--log-format json`` a JSON
    object gets a ``"process"`` key instead, so every line stays valid JSON.
    """
    if not line.endswith(b"\n"):
        line += b"\n"
    if is_json and line.startswith(b"{") and line.rstrip().endswith(b"}"):
        rest = line[1:]
        separator = b"" if rest.lstrip().startswith(b"}") else b", "
        return b'{"process": ' + json.dumps(name).encode() + separator + rest
    return b"[" + name.encode() + b"] " + line


def _reason(line: bytes) -> str:
    """What a child said last, as one line: click's ``Error: …`` or a JSON log line's message."""
    text = line.decode(errors="replace").strip()
    if text.startswith("{"):
        try:
            message = json.loads(text).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str):
            text = message
    return text.removeprefix("Error: ") or "it exited at once"


def _ingest_children(settings: Settings) -> list[_Child]:
    # Each child serves alone (SCANQ_INGEST_PROCESSES=1 in its environment): only a supervisor starts several.
    env = {f"{ENV_PREFIX}INGEST_PROCESSES": "1"}
    if (count := settings.ingest_processes) == 1:
        return [_Child(name="ingest", command="ingest", env=env)]
    return [_Child(name=f"ingest-{n}", command="ingest", env=env, shares_listeners=True) for n in range(1, count + 1)]


def _worker_env(settings: Settings, number: int) -> dict[str, str]:
    # Workers on one machine cannot share a metrics port: worker N serves on metrics_port + N - 1.
    if not settings.metrics_port:
        return {}
    return {f"{ENV_PREFIX}METRICS_PORT": str(settings.metrics_port + number - 1)}


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    # Each child leads its own process group (start_new_session), so this reaches anything it spawned too.
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _redact(url: str) -> str:
    """The URL without a password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


async def prepare_store(settings: Settings) -> None:
    """Open the store once before any child starts, so the schema exists (children never race a migration)."""
    if settings.database_url.startswith("memory:"):
        raise ConfigError("SCANQ_DATABASE_URL: memory:// cannot be shared between processes; use sqlite:///path")
    async with open_store(settings.database_url) as store:
        await store.ping()


async def supervise(settings: Settings) -> int:
    """Run ``scanq up`` until SIGINT/SIGTERM; return the exit code."""
    return await Supervisor(settings).run()


def serve_ingest(settings: Settings) -> None:
    """``scanq ingest``: serve in this process, or start ``ingest_processes`` children on one socket and wait.

    Either way until SIGINT/SIGTERM; with several processes the exit code is the supervisor's.
    """
    if settings.ingest_processes > 1:
        import uvloop

        sys.exit(uvloop.run(Supervisor(settings, only_ingest=True).run()))
    from scanq.api.app import create_ingest_app
    from scanq.api.server import serve

    follow_supervisor()
    serve(create_ingest_app(settings), settings=settings, port=settings.ingest_port)


def follow_supervisor(environ: Mapping[str, str] = os.environ) -> None:
    """In a child of ``scanq up``: get SIGTERM when the supervisor dies, however it dies.

    Does nothing outside ``scanq up``. On Linux the kernel delivers the signal
    (``PR_SET_PDEATHSIG``); elsewhere a daemon thread polls the parent pid.
    Either way the child then shuts down as on any SIGTERM (workers release their scans).
    """
    expected = environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(int(expected),), name="scanq-parent-watch", daemon=True).start()
    if os.getppid() != int(expected):  # the supervisor died before the kernel could be told
        os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
