"""The status A/B tools of the bench: the in-process measure answers every read, the A/B's ratios are per round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.status_ab import _summary
from bench.status_inprocess import measure


async def test_the_in_process_measure_answers_every_read(tmp_path: Path) -> None:
    result = await measure(
        db=tmp_path / "status.db",
        size=300,
        reads=["by_id", "by_id_long", "list"],
        requests=64,
        rounds=2,
        concurrency=8,
        warmup=8,
    )
    assert set(result) == {"by_id", "by_id_long", "list"}
    assert all(len(rounds) == 2 and all(r > 0 for r in rounds) for rounds in result.values())
    # A second run reuses the filled file and its sample of ids.
    assert (tmp_path / "status.ids").exists()
    assert set(
        await measure(
            db=tmp_path / "status.db", size=300, reads=["by_id"], requests=8, rounds=1, concurrency=2, warmup=2
        )
    )


def row(round_: int, variant: str, rate: float, cpu: float) -> dict[str, Any]:
    return {
        "round": round_,
        "read": "by_id",
        "variant": variant,
        "rate_per_s": rate,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "cpu_us": cpu,
        "loop_cpu_us": cpu / 2,
    }


def test_paired_ratios_are_taken_within_each_round() -> None:
    # Round 2 ran on a machine twice as busy: each variant's median mixes the rounds, the pairs do not.
    rows = [
        row(1, "before", 10.0, 100.0),
        row(1, "after", 12.0, 80.0),
        row(2, "after", 6.0, 160.0),
        row(2, "before", 5.0, 200.0),
        row(3, "before", 10.0, 100.0),
        row(3, "after", 12.0, 80.0),
    ]
    summary = _summary(rows)
    assert summary["paired"]["cpu_us_after_over_before"] == 0.8
    assert summary["paired"]["rate_per_s_after_over_before"] == 1.2
    assert summary["medians"]["before"]["cpu_us"] == 100.0
    assert summary["medians"]["after"]["cpu_us"] == 80.0
