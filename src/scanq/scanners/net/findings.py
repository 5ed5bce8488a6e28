"""The one result schema every real scanner plugin reports in.

A scan's ``result`` is a ``ScanReport`` turned into JSON (``ScanReport.to_dict``)::

    {"schema_version": 1, "scanner": "tls", "target": "example.com",
     "addresses": ["93.184.215.14"],
     "plugins": {"tls": "ok"},                  # or "error: <why>" / "skipped: <why>"
     "findings": [{"check_id": "tls.cert.expired", "plugin": "tls", "status": "fail",
                   "severity": "high", "title": ..., "asset": {"host", "ip", "port"},
                   "evidence": {"expected", "actual"}, "remediation": ..., "fingerprint": ...}],
     "summary": {"pass": 9, "fail": 2, "fail_by_severity": {"high": 1, "low": 1}},
     "details": {"tls": {...}}}               # plugin-specific facts (negotiated protocol, ports...)

``surface`` adds ``score``, ``grade`` and ``scoring_version``, or ``not_graded`` (see ``surface.py``).

A ``Check`` is the catalogue entry of one check (id, default severity, title,
remediation); plugins call ``Check.finding`` to report it. Passing checks are
reported too, with the severity the check has when it fails.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
FINGERPRINT_VERSION = "1"
# Evidence is for a human reading a table: keep it short and free of secrets.
EVIDENCE_MAX_CHARS = 200


class Status(enum.StrEnum):
    """Whether the asset passed the check."""

    PASS = "pass"
    FAIL = "fail"


class Severity(enum.StrEnum):
    """How bad a failed check is, from ``info`` to ``critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = (Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


@dataclass(frozen=True, kw_only=True, slots=True)
class Asset:
    """What was checked: the target name, the address actually connected to, and the port (None: the name)."""

    host: str
    ip: str | None = None
    port: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """A short expected/actual pair; never secrets, cookie values or bodies."""

    expected: str
    actual: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One check on one asset."""

    check_id: str
    plugin: str
    status: Status
    severity: Severity
    title: str
    asset: Asset
    evidence: Evidence
    remediation: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(check_id=self.check_id, asset=self.asset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "plugin": self.plugin,
            "status": str(self.status),
            "severity": str(self.severity),
            "title": self.title,
            "asset": {"host": self.asset.host, "ip": self.asset.ip, "port": self.asset.port},
            "evidence": {"expected": self.evidence.expected, "actual": self.evidence.actual},
            "remediation": self.remediation,
            "fingerprint": self.fingerprint,
        }


def fingerprint(*, check_id: str, asset: Asset) -> str:
    """A stable id for "this check on this asset": same value in every scan.

    The IP is left out on purpose: a name behind round-robin DNS or a CDN is
    the same asset whichever address answered this time.
    """
    key = "|".join((FINGERPRINT_VERSION, check_id, asset.host, "" if asset.port is None else str(asset.port)))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def shorten(text: str, limit: int = EVIDENCE_MAX_CHARS) -> str:
    """``text`` on one line, printable, at most ``limit`` characters."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """The catalogue entry of one check; ``docs/scanners.md`` lists them all."""

    check_id: str
    plugin: str
    severity: Severity
    title: str
    remediation: str

    def finding(
        self,
        *,
        passed: bool,
        asset: Asset,
        expected: str,
        actual: str,
        severity: Severity | None = None,
        title: str | None = None,
    ) -> Finding:
        """This check's result on ``asset``.

        Args:
            passed: whether the asset passed.
            asset: what was checked.
            expected: what a passing asset shows.
            actual: what this one showed (shortened).
            severity: overrides the catalogue severity where one check grades its failures (documented per check).
            title: overrides the catalogue title (e.g. to name the port).
        """
        return Finding(
            check_id=self.check_id,
            plugin=self.plugin,
            status=Status.PASS if passed else Status.FAIL,
            severity=severity or self.severity,
            title=title or self.title,
            asset=asset,
            evidence=Evidence(expected=shorten(expected), actual=shorten(actual)),
            remediation=self.remediation,
        )


@dataclass(kw_only=True, slots=True)
class PluginReport:
    """What one plugin found on one target; ``details`` holds plugin-specific JSON facts."""

    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScanReport:
    """A whole scan: every plugin's status and findings."""

    scanner: str
    target: str
    addresses: tuple[str, ...]
    plugins: Mapping[str, str]
    findings: tuple[Finding, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``result`` of the scan."""
        return {
            "schema_version": SCHEMA_VERSION,
            "scanner": self.scanner,
            "target": self.target,
            "addresses": list(self.addresses),
            "plugins": dict(self.plugins),
            "findings": [f.to_dict() for f in sort_findings(self.findings)],
            "summary": summarise(self.findings),
            "details": dict(self.details),
            **self.extra,
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Failures first, worst first, then by check id and port."""
    return sorted(
        findings,
        key=lambda f: (f.status != Status.FAIL, -f.severity.rank, f.check_id, f.asset.port or 0),
    )


def summarise(findings: Iterable[Finding]) -> dict[str, Any]:
    """Counts of passed and failed checks, failures by severity."""
    passed = failed = 0
    by_severity: dict[str, int] = {}
    for f in findings:
        if f.status == Status.PASS:
            passed += 1
        else:
            failed += 1
            by_severity[str(f.severity)] = by_severity.get(str(f.severity), 0) + 1
    return {"pass": passed, "fail": failed, "fail_by_severity": by_severity}


_TABLE_COLUMNS = ("STATUS", "SEVERITY", "CHECK", "ASSET", "ACTUAL")
_ACTUAL_COLUMN_MAX = 60


def format_findings_table(result: Mapping[str, Any]) -> str:
    """A plain-text table of a scan result's findings, for terminals (``scanq submit --wait``).

    Reads the JSON form (``ScanReport.to_dict``), so it works on what the status API returns.
    A result without ``findings`` (e.g. from ``mock``) gives a one-line note.
    """
    findings = result.get("findings")
    if not isinstance(findings, list):
        return "(this result has no findings)"
    rows = [_table_row(f) for f in findings if isinstance(f, Mapping)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(_TABLE_COLUMNS)]
    lines = [_table_line(_TABLE_COLUMNS, widths), _table_line(tuple("-" * w for w in widths), widths)]
    lines += [_table_line(r, widths) for r in rows]
    lines.append("")
    plugins = result.get("plugins") or {}
    lines.append("plugins: " + ", ".join(f"{name}={state}" for name, state in sorted(plugins.items())))
    summary = result.get("summary") or {}
    if summary:
        worst = ", ".join(f"{count} {sev}" for sev, count in sorted(summary.get("fail_by_severity", {}).items()))
        lines.append(f"checks: {summary.get('pass', 0)} passed, {summary.get('fail', 0)} failed ({worst or 'none'})")
    if "score" in result:
        lines.append(
            f"score: {result['score']}/100  grade: {result.get('grade')}  (scoring v{result.get('scoring_version')})"
        )
    elif result.get("not_graded"):
        lines.append(f"score: not graded: {', '.join(map(str, result['not_graded']))} could not run (see plugins)")
    return "\n".join(lines)


def _table_row(f: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    asset = f.get("asset") or {}
    where = str(asset.get("host", ""))
    if asset.get("port") is not None:
        where += f":{asset['port']}"
    actual = str((f.get("evidence") or {}).get("actual", ""))
    return (
        str(f.get("status", "")).upper(),
        str(f.get("severity", "")),
        str(f.get("check_id", "")),
        where,
        shorten(actual, _ACTUAL_COLUMN_MAX),
    )


def _table_line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
