"""Read samples back from Prometheus text exposition, as a scraper would."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None when absent).

    Args:
        text: a ``/metrics`` body.
        name: the full sample name, e.g. ``scanq_scans_claimed_total`` or ``scanq_scan_run_seconds_count``.
        labels: labels the sample must carry (others are ignored).
    """
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return None


def sample_sum(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of every ``name`` sample whose labels include ``labels`` (0 when none)."""
    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += float(sample.value)
    return total
