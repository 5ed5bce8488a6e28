"""What every scenario gets: the ``--db`` value, a scratch directory and the quick flag; shared measure helpers."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import percentile


@dataclass(frozen=True, kw_only=True)
class BenchContext:
    """One run of the harness.

    Args:
        db: ``sqlite``, ``postgresql://…`` or ``mongodb://…`` (each scenario makes its own fresh database there).
        workdir: scratch directory for SQLite files, process logs and load-generator inputs.
        is_quick: tiny sizes, for a smoke run that only shows the harness works.
        options: scenario options from the command line (``--soak-rate`` → ``{"soak_rate": "…"}``), None when unset.
    """

    db: str
    workdir: Path
    is_quick: bool
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in a smoke run, else ``full``."""
        return quick if self.is_quick else full


def summarize_ms(values_ms: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p90, p99 and max of latencies in milliseconds."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"n": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "n": len(ordered),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p90_ms": round(percentile(ordered, 0.90), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
    }


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"
