"""Render a run's report as a markdown table (what ``python -m bench`` prints and docs/benchmarks.md holds)."""

from __future__ import annotations

from typing import Any


def render_markdown(report: dict[str, Any]) -> str:
    """Machine line, one table of every scenario's rows, the targets, and any failures."""
    machine = report["machine"]
    quick = " — QUICK smoke run" if report["is_quick"] else ""
    lines = [
        f"## scanq benchmarks: {report['backend']} ({report['db']}){quick}",
        "",
        f"`{report['command']}` at {report['started_at']}",
        "",
        f"{machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgresql']}" if "postgresql" in machine else "")
        + f"; load average {machine['load_average_at_start']} → {machine.get('load_average_at_end')}",
        "",
        "| scenario | measure | result |",
        "|---|---|---|",
    ]
    for name, result in report["scenarios"].items():
        for measure, value in result.get("table", []):
            lines.append(f"| {name} | {measure} | {value} |")
    for name in report["failed"]:
        if name not in report["scenarios"]:
            lines.append(f"| {name} | FAILED | see the JSON report |")
    for result in report["scenarios"].values():
        for table in result.get("tables", []):
            lines += ["", f"**{table['title']}**", "", "| " + " | ".join(table["columns"]) + " |"]
            lines.append("|" + "---|" * len(table["columns"]))
            lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for target in report.get("targets", []):
        value = "—" if target["value"] is None else _number(target["value"])
        met = {True: "yes", False: "**no**", None: "—"}[target["met"]]
        lines.append(f"| {target['target']} | {target['goal']} | {value} | {met} |")
    for name, trace in report["failed"].items():
        lines += ["", f"### {name} failed", "", "```", trace.strip(), "```"]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
