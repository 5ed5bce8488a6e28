"""How the ``peers`` scenario measures a drain, the same way for every queue system.

The bench process asks the database how many jobs are done every
``SAMPLE_INTERVAL_S`` (each system's own exact count: scanq's ``stats``, a
``count(*)`` on the peers' tables) and reads the worker's CPU time from
``/proc`` at the same moment. The rate is taken between the moments the
done-count crossed 10% and 90% of the jobs, each interpolated between the two
samples around it: the worker's start-up (interpreter, imports, connecting,
the first claim) and its last partial batch are left out for every system
alike. The CPU per job is taken over the same window: the worker's, and the
local PostgreSQL server's (every ``postgres`` process, the bench's own sampling
backend included, the same for every system): for a PostgreSQL queue most of
the work per job is the server's. Only the backends connected to the drain's
own database count (found by their process title), so other clients of the
server (and its background writers) are left out.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.processes import Process

SAMPLE_INTERVAL_S = 0.05
LOW_MARK = 0.10
HIGH_MARK = 0.90
# Fewer samples than this between the marks: the rate is coarse (said in the result, not an error).
MIN_SAMPLES_BETWEEN_MARKS = 5

CountDone = Callable[[], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the drain: seconds since the worker was spawned, jobs done, the worker's and the local
    PostgreSQL server's CPU seconds."""

    at_s: float
    done: int
    cpu_s: float
    server_cpu_s: float = 0.0


def postgres_cpu_seconds(database: str) -> float:
    """CPU seconds of the local PostgreSQL server's backends connected to ``database`` (0 when none is local).

    A backend's title (its command line) is ``postgres: USER DATABASE HOST(PORT) STATE``.
    """
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            if f" {database} " not in (entry / "cmdline").read_text():
                continue
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # it ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Trace:
    """Every sample of one drain, and what the sampling itself cost."""

    total: int
    samples: list[Sample] = field(default_factory=list)
    query_s: list[float] = field(default_factory=list)

    @property
    def finished_at_s(self) -> float:
        return self.samples[-1].at_s if self.samples else 0.0


async def follow_drain(
    *,
    process: Process,
    count_done: CountDone,
    total: int,
    timeout_s: float,
    database_url: str,
    interval_s: float = SAMPLE_INTERVAL_S,
) -> Trace:
    """Sample ``count_done`` and the worker's CPU until ``total`` jobs are done; return the trace.

    Args:
        process: the worker, spawned just before (its ``started_at`` is time zero); checked alive each sample.
        count_done: the system's exact count of finished jobs, read from the database.
        total: jobs queued.
        database_url: the drain's database; when on PostgreSQL, its backends' CPU is sampled too.
        timeout_s: give up (``TimeoutError``) when the drain has not finished by then.
        interval_s: time between the starts of two samples.
    """
    trace = Trace(total=total)
    parts = urlsplit(database_url)
    database = parts.path.lstrip("/") if parts.scheme.startswith("postgres") else None
    spawned = time.monotonic() - (time.time() - process.started_at)
    deadline = time.monotonic() + timeout_s
    while True:
        began = time.monotonic()
        done = await count_done()
        ended = time.monotonic()
        # The count is a snapshot taken somewhere inside the query: its middle is the best guess.
        trace.samples.append(
            Sample(
                at_s=(began + ended) / 2 - spawned,
                done=done,
                cpu_s=process.cpu_seconds(),
                server_cpu_s=postgres_cpu_seconds(database) if database else 0.0,
            )
        )
        trace.query_s.append(ended - began)
        if done >= total:
            return trace
        process.check_alive()
        if ended > deadline:
            raise TimeoutError(f"{process.name}: only {done} of {total} jobs done after {timeout_s:.0f}s")
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - began)))


def crossing(samples: list[Sample], level: float) -> Sample:
    """The moment (and CPU) the done-count reached ``level``, interpolated linearly between two samples.

    Raises ``ValueError`` when no sample reached it.
    """
    previous: Sample | None = None
    for sample in samples:
        if sample.done >= level:
            if previous is None or sample.done == previous.done:
                return sample
            share = (level - previous.done) / (sample.done - previous.done)
            return Sample(
                at_s=previous.at_s + share * (sample.at_s - previous.at_s),
                done=round(level),
                cpu_s=previous.cpu_s + share * (sample.cpu_s - previous.cpu_s),
                server_cpu_s=previous.server_cpu_s + share * (sample.server_cpu_s - previous.server_cpu_s),
            )
        previous = sample
    raise ValueError(f"the done-count never reached {level:g}")


def summarize(trace: Trace) -> dict[str, Any]:
    """Rate and CPU per job between the 10% and 90% marks, plus start-up and wall time, from one trace."""
    low = crossing(trace.samples, LOW_MARK * trace.total)
    high = crossing(trace.samples, HIGH_MARK * trace.total)
    jobs = (HIGH_MARK - LOW_MARK) * trace.total
    window_s = high.at_s - low.at_s
    first_done = next((sample.at_s for sample in trace.samples if sample.done > 0), trace.finished_at_s)
    between = sum(1 for sample in trace.samples if low.at_s < sample.at_s < high.at_s)
    queries_ms = sorted(seconds * 1000 for seconds in trace.query_s)
    return {
        "rate_per_s": round(jobs / window_s, 1) if window_s > 0 else 0.0,
        "cpu_us_per_job": round((high.cpu_s - low.cpu_s) / jobs * 1e6, 2) if jobs else 0.0,
        "server_cpu_us_per_job": round((high.server_cpu_s - low.server_cpu_s) / jobs * 1e6, 2) if jobs else 0.0,
        "low_mark_s": round(low.at_s, 3),
        "high_mark_s": round(high.at_s, 3),
        "first_done_s": round(first_done, 3),
        "wall_s": round(trace.finished_at_s, 3),
        "wall_rate_per_s": round(trace.total / trace.finished_at_s, 1) if trace.finished_at_s > 0 else 0.0,
        "samples": len(trace.samples),
        "samples_between_marks": between,
        "is_coarse": between < MIN_SAMPLES_BETWEEN_MARKS,
        "sample_query_ms_p50": round(queries_ms[len(queries_ms) // 2], 2) if queries_ms else 0.0,
        "sample_query_ms_max": round(queries_ms[-1], 2) if queries_ms else 0.0,
    }
