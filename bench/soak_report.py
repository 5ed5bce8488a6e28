"""The soak's verdict and its pictures: every scan accounted for, flat latencies, a database that levels off.

- ``verify_scans``: after the run, every id the submitter got back must be
  found Complete, in the store (not pruned yet) or in the retention archive
  (pruned after finishing), and no scan may have completed twice (two
  Complete attempts in one history, or copies naming different attempts).
- ``check_run``: the last 10% of the steady intervals (submitting, the first
  and last left out) against the first 10%, by the median of each series: a
  latency may be at most 25% higher, a rate within 25% either way; the
  database size of the last 10% at most 25% above its size in the middle of
  the run (40-60%), once retention's window is full.
- ``plot_samples``: PNGs of every series over time (matplotlib, the ``bench``
  extra). ``python -m bench.soak_report REPORT.json --out DIR`` draws them
  again from a saved report.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from scanq.archive import ARCHIVE_SUFFIX, read_archive
from scanq.store import open_store
from scanq.store.base import MAX_PAGE_SIZE

logger = logging.getLogger(__name__)

EDGE_FRACTION = 0.10
MAX_DRIFT = 0.25
# name: (path in a sample, "latency" or "rate")
SERIES: dict[str, tuple[tuple[str, ...], str]] = {
    "submit p50 ms": (("submit_ms", "p50_ms"), "latency"),
    "submit p99 ms": (("submit_ms", "p99_ms"), "latency"),
    "pickup p50 ms": (("pickup_ms", "p50_ms"), "latency"),
    "pickup p99 ms": (("pickup_ms", "p99_ms"), "latency"),
    "status by id p99 ms": (("by_id_ms", "p99_ms"), "latency"),
    "list p99 ms": (("list_ms", "p99_ms"), "latency"),
    "stats p99 ms": (("stats_ms", "p99_ms"), "latency"),
    "submit rate /s": (("submit_per_s",), "rate"),
    "drain rate /s": (("drain_per_s",), "rate"),
}
MB = 1e6
# Series sampled only 50 times per interval: a p99 of 50 values is their maximum, so one interval's "p99"
# is noise. Where a report kept the raw values, a window's p99 is taken over all of its values instead.
POOLED: dict[str, str] = {"pickup p99 ms": "pickup_raw_ms", "status by id p99 ms": "by_id_raw_ms"}


# -- every acknowledged scan accounted for -----------------------------------------------------------


class _Tally:
    def __init__(self, acknowledged: Sequence[str]) -> None:
        self.pending = set(acknowledged)
        self.acknowledged = len(acknowledged)
        self.duplicate_acks = len(acknowledged) - len(self.pending)
        self.completed_at: dict[str, int] = {}  # scan id → the attempt that completed it
        self.completed_twice = 0
        self.duplicate_copies = 0
        self.not_complete: Counter[str] = Counter()
        self.unacknowledged = 0

    def see(self, scan_id: str, status: str, completed_attempts: list[int]) -> None:
        if len(completed_attempts) > 1:
            self.completed_twice += 1
        if status != "Complete":
            if scan_id in self.pending:
                self.not_complete[status] += 1
            return
        attempt = completed_attempts[-1] if completed_attempts else -1
        earlier = self.completed_at.get(scan_id)
        if earlier is not None:
            # The same completion stored twice (archived, then found again) is a copy; another attempt is not.
            if earlier == attempt:
                self.duplicate_copies += 1
            else:
                self.completed_twice += 1
            return
        self.completed_at[scan_id] = attempt
        if scan_id in self.pending:
            self.pending.discard(scan_id)
        else:
            self.unacknowledged += 1


def _completed_attempts(history: Sequence[dict[str, Any]] | Sequence[Any]) -> list[int]:
    found = []
    for entry in history:
        outcome = entry.get("outcome") if isinstance(entry, dict) else getattr(entry, "outcome", None)
        attempt = entry.get("attempt") if isinstance(entry, dict) else getattr(entry, "attempt", None)
        if str(outcome) == "Complete":
            found.append(int(attempt or 0))
    return found


async def verify_scans(url: str, *, acknowledged: Sequence[str], archive: Path) -> dict[str, Any]:
    """Find every acknowledged id Complete in the archive or the store; count what is missing or doubled."""
    tally = _Tally(acknowledged)
    archived = 0
    archive_files = sorted(archive.glob(f"*{ARCHIVE_SUFFIX}"))
    # Read as scanq reads it back (a batch cut short by a crash was never deleted, and is skipped).
    for record in read_archive(archive):
        archived += 1
        tally.see(str(record["scan_id"]), str(record["status"]), _completed_attempts(record.get("history") or []))
    stored = 0
    async with open_store(url) as store:
        cursor: str | None = None
        while True:
            page = await store.list_scans(limit=MAX_PAGE_SIZE, cursor=cursor)
            for scan in page.scans:
                stored += 1
                tally.see(scan.scan_id, str(scan.status), _completed_attempts(scan.history))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return {
        "acknowledged": tally.acknowledged,
        "duplicate_acks": tally.duplicate_acks,
        "in_archive": archived,
        "archive_files": len(archive_files),
        "in_store": stored,
        "lost": len(tally.pending),
        "lost_examples": sorted(tally.pending)[:10],
        "not_complete": dict(tally.not_complete),
        "completed_twice": tally.completed_twice,
        "duplicate_copies": tally.duplicate_copies,
        "unacknowledged_found": tally.unacknowledged,
    }


# -- flat over time -----------------------------------------------------------------------------------


def _value(sample: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at ``path``; None when absent, or a percentile of no requests at all (``n`` 0)."""
    node: Any = sample
    for key in path:
        if not isinstance(node, dict) or key not in node or node.get("n") == 0:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def steady(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intervals spent submitting, less the first and the last (each only partly so)."""
    return [s for s in samples if s.get("phase") == "submit"][1:-1]


def _pooled_p99(samples: Sequence[dict[str, Any]], key: str) -> float | None:
    values = sorted(v for s in samples for v in (s.get(key) or []))
    return round(percentile(values, 0.99), 3) if values else None


def _median_of(samples: Sequence[dict[str, Any]], path: tuple[str, ...]) -> float | None:
    values = [v for v in (_value(s, path) for s in samples) if v is not None]
    return round(statistics.median(values), 3) if values else None


def check_run(samples: Sequence[dict[str, Any]], *, verification: dict[str, Any], is_quick: bool) -> dict[str, Any]:
    """The stability of every series, whether the size levelled off, and the verdict.

    A quick run is judged on correctness only (its figures are computed, not judged).
    """
    run = steady(samples)
    edge = max(1, round(len(run) * EDGE_FRACTION))
    first, last = run[:edge], run[-edge:]
    stability: dict[str, dict[str, Any]] = {}
    for name, (path, kind) in SERIES.items():
        before, after = _median_of(first, path), _median_of(last, path)
        raw = POOLED.get(name)
        if raw is not None and all(raw in s for s in (*first, *last)):
            before, after = _pooled_p99(first, raw), _pooled_p99(last, raw)
        is_ok: bool | None = None
        if before is not None and after is not None and not is_quick and len(run) >= 2:
            if kind == "latency":
                is_ok = after <= before * (1 + MAX_DRIFT)
            else:
                is_ok = before > 0 and abs(after / before - 1) <= MAX_DRIFT
        stability[name] = {"first": before or 0.0, "last": after or 0.0, "kind": kind, "ok": is_ok}
    middle = run[int(len(run) * 0.4) : max(int(len(run) * 0.6), int(len(run) * 0.4) + 1)]
    size_path = ("sizes", "database_bytes")
    middle_bytes, last_bytes = _median_of(middle, size_path), _median_of(last, size_path)
    size_ok: bool | None = None
    if middle_bytes and last_bytes and not is_quick:
        size_ok = last_bytes <= middle_bytes * (1 + MAX_DRIFT)
    levels_off = {
        "middle_mb": round((middle_bytes or 0) / MB, 1),
        "last_mb": round((last_bytes or 0) / MB, 1),
        "max_mb": round(max((_value(s, size_path) or 0 for s in samples), default=0) / MB, 1),
        "ok": size_ok,
    }
    is_correct = verification["lost"] == 0 and verification["completed_twice"] == 0
    is_flat = all(c["ok"] is not False for c in stability.values()) and size_ok is not False
    return {
        "steady_intervals": len(run),
        "stability": stability,
        "levels_off": levels_off,
        "is_correct": is_correct,
        "passed": is_correct and (is_quick or is_flat),
    }


# -- pictures -----------------------------------------------------------------------------------------


def plot_samples(samples: Sequence[dict[str, Any]], *, out: Path, title: str) -> list[str]:
    """Write the soak's PNGs into ``out``; return their paths ([] without matplotlib)."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        logger.warning("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    out.mkdir(parents=True, exist_ok=True)
    minutes = [s["t_s"] / 60 for s in samples]

    def series(*path: str, scale: float = 1.0) -> list[float]:
        values = (_value(s, path) for s in samples)
        return [math.nan if v is None else v / scale for v in values]  # a gap where nothing was measured

    def panel(ax: Any, lines: dict[str, list[float]], ylabel: str, *, log: bool = False) -> None:
        for label, values in lines.items():
            ax.plot(minutes, values, label=label, linewidth=1.2)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        if log:
            ax.set_yscale("log")

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.axes[-1].set_xlabel("minutes since the first submission")
        fig.suptitle(f"soak: {title}")
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))

    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    panel(axes[0], {"submit p50": series("submit_ms", "p50_ms"), "submit p99": series("submit_ms", "p99_ms")}, "ms")
    panel(axes[1], {"pickup p50": series("pickup_ms", "p50_ms"), "pickup p99": series("pickup_ms", "p99_ms")}, "ms")
    reads = {
        "status by id p99": series("by_id_ms", "p99_ms"),
        "list p99": series("list_ms", "p99_ms"),
        "stats p99": series("stats_ms", "p99_ms"),
    }
    panel(axes[2], reads, "ms")
    save(fig, "latency.png")

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    panel(axes[0], {"submitted /s": series("submit_per_s"), "drained /s": series("drain_per_s")}, "scans per second")
    panel(axes[1], {"rows in the table": series("rows"), "queued + running": series("backlog")}, "scans")
    # The machine is shared: its load explains most of what moves in the other plots.
    load = [s["load_average"][0] if s.get("load_average") else math.nan for s in samples]
    panel(axes[2], {"1-minute load average (2 cores)": load, "submitter lag s": series("lag_max_ms", scale=1000)}, "")
    save(fig, "rates.png")

    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    sizes = {
        "database": series("sizes", "database_bytes", scale=MB),
        "scans table": series("sizes", "table_bytes", scale=MB),
        "claim index": series("sizes", "claim_index_bytes", scale=MB),
    }
    if any(_value(s, ("sizes", "free_bytes")) for s in samples):
        sizes["SQLite free pages"] = series("sizes", "free_bytes", scale=MB)
    panel(axes[0], sizes, "MB")
    if any(_value(s, ("sizes", "dead_tuples")) is not None for s in samples):
        panel(axes[1], {"dead tuples (scans)": series("sizes", "dead_tuples")}, "tuples")
    else:
        panel(axes[1], {"WAL file": series("sizes", "wal_bytes", scale=MB)}, "MB")
    save(fig, "size.png")

    fig, ax = plt.subplots(1, 1, figsize=(10, 3.5))
    names = sorted({name for s in samples for name in s.get("rss_mb", {})})
    panel(ax, {name: series("rss_mb", name) for name in names}, "RSS MB")
    save(fig, "rss.png")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Draw the plots of a saved ``python -m bench --json`` report that ran the soak."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak_report", description=main.__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    report = json.loads(args.report.read_text())
    soak = report["scenarios"]["soak"]
    for path in plot_samples(soak["samples"], out=args.out, title=f"{soak['backend']}, {soak['scans']:,} scans"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
