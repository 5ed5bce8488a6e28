"""scanq's benchmark harness: ``python -m bench --db sqlite`` (see bench/README.md and docs/benchmarks.md)."""
