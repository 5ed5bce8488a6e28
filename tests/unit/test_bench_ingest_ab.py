"""The ingest A/B tools of the bench: the in-process measure runs, and the A/B's paired medians are per round."""

from __future__ import annotations

import json
from typing import Any

from bench.ingest_ab import ITEM, MEDIAN_KEYS, PAIRED_KEYS, batch_body, paired_ratios, variant_medians
from bench.ingest_inprocess import measure


async def test_the_in_process_measure_answers_every_submission() -> None:
    rounds = await measure(requests=50, rounds=2)
    assert len(rounds) == 2 and all(r > 0 for r in rounds)


def row(round_: int, variant: str, rate: float, cpu: float) -> dict[str, Any]:
    return {
        "round": round_,
        "variant": variant,
        "scans_per_s": rate,
        "bare_per_s": 100.0,
        "vs_bare": rate / 100.0,
        "bare_cpu_us": 30.0,
        "cpu_us": cpu,
        "loop_cpu_us": cpu / 2,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
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
    assert paired_ratios(rows, PAIRED_KEYS) == {
        "scans_per_s_after_over_before": 1.2,
        "cpu_us_after_over_before": 0.8,
        "loop_cpu_us_after_over_before": 0.8,
    }
    assert variant_medians(rows, "after", MEDIAN_KEYS)["scans_per_s"] == 12.0


def test_the_batch_body_is_the_ingest_scenarios() -> None:
    assert json.loads(batch_body(3)) == {"scans": [ITEM] * 3}
