"""The peers scenario's measure: the 10% and 90% marks interpolated between samples, rate and CPU over that window."""

from __future__ import annotations

import pytest
from bench.peers_measure import Sample, Trace, crossing, summarize


def test_crossing_interpolates_between_the_samples_around_the_level() -> None:
    samples = [Sample(at_s=1.0, done=0, cpu_s=0.5), Sample(at_s=2.0, done=100, cpu_s=1.5)]

    mark = crossing(samples, 25)

    assert mark.at_s == pytest.approx(1.25)
    assert mark.cpu_s == pytest.approx(0.75)
    assert mark.done == 25


def test_crossing_takes_a_sample_exactly_at_the_level_and_fails_when_none_reaches_it() -> None:
    samples = [Sample(at_s=0.5, done=10, cpu_s=0.1), Sample(at_s=0.7, done=30, cpu_s=0.2)]

    assert crossing(samples, 10).at_s == pytest.approx(0.5)
    with pytest.raises(ValueError, match="never reached"):
        crossing(samples, 31)


def test_summarize_leaves_out_the_start_up_and_counts_only_between_the_marks() -> None:
    # Nothing done for 2 s (start-up), then 1,000 jobs/s at 100 µs of CPU each, the last sample at 1,000 jobs.
    samples = [Sample(at_s=t / 10, done=0, cpu_s=0.3) for t in range(21)]
    samples += [Sample(at_s=2.0 + k / 10, done=100 * k, cpu_s=0.3 + 0.01 * k) for k in range(1, 11)]
    trace = Trace(total=1000, samples=samples, query_s=[0.001] * len(samples))

    found = summarize(trace)

    assert found["rate_per_s"] == pytest.approx(1000.0)
    assert found["cpu_us_per_job"] == pytest.approx(100.0)
    assert found["low_mark_s"] == pytest.approx(2.1)
    assert found["high_mark_s"] == pytest.approx(2.9)
    assert found["first_done_s"] == pytest.approx(2.1)
    assert found["wall_s"] == pytest.approx(3.0)
    assert found["samples_between_marks"] == 7
    assert found["is_coarse"] is False


def test_summarize_of_a_drain_faster_than_the_sampling_says_it_is_coarse() -> None:
    trace = Trace(total=100, samples=[Sample(at_s=1.0, done=0, cpu_s=0.0), Sample(at_s=1.05, done=100, cpu_s=0.01)])

    found = summarize(trace)

    assert found["rate_per_s"] == pytest.approx(100 * 0.8 / (0.05 * 0.8))
    assert found["is_coarse"] is True
