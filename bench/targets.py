"""The issue's performance targets, checked against a run's JSON results."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Target:
    """One goal: ``results[scenario][path…] <op> threshold``."""

    scenario: str
    path: tuple[str, ...]
    op: str  # ">=" or "<="
    threshold: float
    label: str

    def value(self, results: Mapping[str, Any]) -> float | None:
        node: Any = results.get(self.scenario)
        for key in self.path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, int | float) else None


_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}

TARGETS = (
    Target(scenario="ingest", path=("single_vs_bare",), op=">=", threshold=0.45, label="ingest single / bare"),
    Target(scenario="ingest", path=("batch", "scans_per_s"), op=">=", threshold=60_000, label="ingest batch scans/s"),
    Target(scenario="drain", path=("workers_1", "rate_per_s"), op=">=", threshold=15_000, label="drain 1 worker/s"),
    Target(scenario="pickup", path=("p50_ms",), op="<=", threshold=3.0, label="pickup p50 ms"),
    Target(scenario="pickup", path=("p99_ms",), op="<=", threshold=15.0, label="pickup p99 ms"),
    Target(scenario="status", path=("at_1000000", "by_id", "p99_ms"), op="<=", threshold=5.0, label="1M by id p99"),
    Target(scenario="status", path=("at_1000000", "list", "p99_ms"), op="<=", threshold=20.0, label="1M list p99"),
    Target(scenario="status", path=("at_1000000", "stats", "p99_ms"), op="<=", threshold=50.0, label="1M stats p99"),
    # Issue 17: the same reads with 64 concurrent clients (queueing included).
    Target(
        scenario="status",
        path=("at_1000000", "by_id_64", "p99_ms"),
        op="<=",
        threshold=10.0,
        label="1M by id p99, 64 clients",
    ),
    Target(
        scenario="status",
        path=("at_1000000", "list_64", "p99_ms"),
        op="<=",
        threshold=10.0,
        label="1M list p99, 64 clients",
    ),
    Target(scenario="concurrency", path=("rss_peak_mb",), op="<=", threshold=300.0, label="10k RSS MB"),
    Target(scenario="concurrency", path=("throughput_ratio",), op=">=", threshold=0.90, label="10k throughput / ideal"),
    Target(scenario="peers", path=("scanq_postgres_vs_pgqueuer",), op=">=", threshold=1.6, label="peers PG/pgqueuer"),
    Target(scenario="peers", path=("scanq_sqlite_vs_pgqueuer",), op=">=", threshold=1.6, label="peers SQLite/pgqueuer"),
)


def check_targets(results: Mapping[str, Any], *, is_quick: bool) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it holds (None when not measured or a quick run)."""
    checked = []
    for target in TARGETS:
        value = target.value(results)
        is_met = None if value is None or is_quick else _OPS[target.op](value, target.threshold)
        checked.append(
            {
                "target": target.label,
                "goal": f"{target.op} {target.threshold:g}",
                "value": value,
                "met": is_met,
            }
        )
    return checked
