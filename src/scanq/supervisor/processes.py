"""``Supervisor``: start each child, label its output, restart it when it exits, stop them all together.

Each child is its own OS process started as ``python -m scanq ingest|status|worker``
(so ``ps`` shows what it is and an operator can signal one), with every setting
passed through ``SCANQ_*`` environment variables (``plan.py``). A child that
exits is restarted with exponential backoff. SIGINT/SIGTERM stops all
children: SIGTERM to each child's process group, SIGKILL after
``shutdown_seconds`` plus a grace period; a second signal kills at once.

Before any child starts, the supervisor opens the store once (so the schema
exists) and, for each service run in several processes, binds its port once
(``api/listeners.py``): those children inherit the socket, so one restarts
while the others go on accepting, and a port already taken stops the
supervisor with exit 78 before anything runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import BinaryIO

from scanq.backoff import backoff_delay
from scanq.config import Settings
from scanq.exceptions import ConfigError, StartupError
from scanq.store import open_store
from scanq.supervisor.follow import SUPERVISOR_PID_ENV
from scanq.supervisor.output import banner, label_line, own_line, reason
from scanq.supervisor.plan import Child, Service, inherited_environ, plan_children, settings_environ

RESTART_BASE_S = 0.5
RESTART_MAX_S = 30.0
# A child that ran this long before exiting counts as healthy: its restart backoff starts over.
STABLE_AFTER_S = 30.0
KILL_GRACE_S = 3.0
LINE_LIMIT_BYTES = 1 << 20
# How a child ends when asked to stop: cleanly, or by the SIGTERM/SIGINT it re-raises after a clean shutdown.
NORMAL_STOP_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


class Supervisor:
    """Starts, labels, restarts and stops the children of ``scanq up`` (or of one service's ``--processes N``).

    Args:
        settings: passed to every child through the environment; ``workers`` says how many workers,
            ``ingest_processes`` and ``status_processes`` how many processes serve each service.
        out: where labelled child output and the start banner go (default: stdout).
        only: run this service's processes only (``scanq status --processes N``), not the others and no worker.
    """

    def __init__(self, settings: Settings, *, out: BinaryIO | None = None, only: Service | None = None) -> None:
        self.settings = settings
        self._out = out if out is not None else sys.stdout.buffer
        self._only = only
        self._name = only.name if only is not None else "up"
        self._children = plan_children(settings, only=only)
        # Per service run in several processes: the descriptors of its listening sockets and the variable naming
        # them, bound by run().
        self._handoffs: dict[Service, tuple[list[int], dict[str, str]]] = {}
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

        Raise ``StartupError`` when the port of a service run in several processes cannot be bound.
        """
        from scanq.api.listeners import close  # not in every worker: starlette

        await prepare_store(self.settings)
        listeners = self._listen()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        try:
            for line in banner(self.settings, only=self._only):
                self._emit(self._name, line)
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

    def _listen(self) -> list[socket.socket]:
        """Bind the port of every service whose children share one; all or none (``StartupError``)."""
        from scanq.api.listeners import close, handoff_environ, listen_shared

        bound: list[socket.socket] = []
        try:
            for service in dict.fromkeys(child.listeners for child in self._children if child.listeners):
                sockets = listen_shared(self.settings.host, service.port(self.settings))
                bound += sockets
                self._handoffs[service] = [sock.fileno() for sock in sockets], handoff_environ(sockets)
        except BaseException:
            close(bound)
            raise
        return bound

    async def _supervise(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        fds, handoff_env = self._handoffs[child.listeners] if child.listeners else ([], {})
        while not self._stop_event.is_set():
            started = loop.time()
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "scanq",
                    child.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**self._environ, **child.env, **handoff_env},
                    pass_fds=fds,
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
                self._failure = f"{child.name} cannot start: {reason(child.last_line)}"
                self._stop_event.set()
                return
            failures = 1 if loop.time() - started > STABLE_AFTER_S else failures + 1
            delay = backoff_delay(failures, base_s=RESTART_BASE_S, max_s=RESTART_MAX_S, full_jitter=False)
            self._emit(
                self._name, f"{child.name} (pid {process.pid}) exited with code {code}; restarting in {delay:.1f}s"
            )
            await _wait(self._stop_event, delay)

    async def _pump(self, child: Child, reader: asyncio.StreamReader) -> None:
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
        is_json = self.settings.log_format == "json"
        self._write(own_line(name, message, level=level, is_json=is_json, logger="scanq.supervisor"))

    def _write(self, data: bytes) -> None:
        try:
            self._out.write(data)
            self._out.flush()
        except (BrokenPipeError, ValueError):  # our own output is gone; keep supervising
            pass


async def prepare_store(settings: Settings) -> None:
    """Open the store once before any child starts, so the schema exists (children never race a migration)."""
    if settings.database_url.startswith("memory:"):
        raise ConfigError("SCANQ_DATABASE_URL: memory:// cannot be shared between processes; use sqlite:///path")
    async with open_store(settings.database_url) as store:
        await store.ping()


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


__all__ = ["KILL_GRACE_S", "NORMAL_STOP_CODES", "Supervisor", "prepare_store"]
