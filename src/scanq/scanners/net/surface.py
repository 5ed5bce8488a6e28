"""The ``surface`` scanner: tls, ports, http and dns on one target at once, with a score and a grade.

The target is resolved and checked once; the four plugins share that session
(the same checked address, one socket limit for the target) and run
concurrently, each under its own time limit, each with its own status in
``plugins``: ``ok``, ``error: <why>`` or ``skipped: <why>`` (dns on an IP
target, or on an internal name known only from the hosts file). A plugin that
fails does not fail the scan; the scan fails only when no plugin could run,
and a target none of the chosen plugins can take is refused at submit time.

Scoring, version ``SCORING_VERSION`` (docs/scanners.md):
    score = max(0, 100 - sum of DEDUCTIONS[severity] over failed findings)
    grade = first of GRADES whose floor the score reaches; a critical failure caps the grade at D.
    No score and no grade when a plugin could not run (``error``): ``not_graded`` names it instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanq.exceptions import ScannerError, ScanqError, TargetRefused, TransientScanError, ValidationError
from scanq.scanners.net.connect import Session, open_session
from scanq.scanners.net.dnscheck import DnsScanner
from scanq.scanners.net.findings import Finding, PluginReport, ScanReport, Severity, Status
from scanq.scanners.net.plugin import TargetScanner, reject_unknown, run_with_timeout
from scanq.scanners.net.ports import PortsScanner
from scanq.scanners.net.targets import ParsedTarget, internal_name_refusal
from scanq.scanners.net.tls import TlsScanner
from scanq.scanners.net.web import HttpScanner
from scanq.scanners.settings import ScannerContext

logger = logging.getLogger(__name__)

PLUGIN = "surface"
SCORING_VERSION = 1
DEDUCTIONS = {
    Severity.CRITICAL: 40,
    Severity.HIGH: 20,
    Severity.MEDIUM: 8,
    Severity.LOW: 3,
    Severity.INFO: 0,
}
GRADES = (("A", 90), ("B", 75), ("C", 60), ("D", 40), ("F", 0))
CRITICAL_GRADE_CAP = "D"
PLUGIN_CLASSES: dict[str, type[TargetScanner[Any]]] = {
    "tls": TlsScanner,
    "ports": PortsScanner,
    "http": HttpScanner,
    "dns": DnsScanner,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class SurfaceOptions:
    """``plugins``: which to run (default all four); ``tls``/``ports``/``http``/``dns``: each one's options."""

    plugins: tuple[str, ...]
    per_plugin: Mapping[str, Any]


class SurfaceScanner(TargetScanner[SurfaceOptions]):
    """Runs every real scanner on one target and grades the result."""

    name = PLUGIN
    allow_url = True

    def __init__(self, context: ScannerContext) -> None:
        super().__init__(context)
        self.plugins = {name: cls(context) for name, cls in PLUGIN_CLASSES.items()}

    def parse_options(self, options: Mapping[str, Any]) -> SurfaceOptions:
        reject_unknown(options, {"plugins", *PLUGIN_CLASSES}, plugin=PLUGIN)
        chosen = options.get("plugins", list(PLUGIN_CLASSES))
        if not isinstance(chosen, list) or not chosen or not all(name in PLUGIN_CLASSES for name in chosen):
            raise ValidationError(f"option 'plugins' must be a non-empty list of: {', '.join(PLUGIN_CLASSES)}")
        per_plugin = {}
        for name in PLUGIN_CLASSES:
            sub = options.get(name, {})
            if not isinstance(sub, Mapping):
                raise ValidationError(f"option {name!r} must be a JSON object of {name} options")
            per_plugin[name] = self.plugins[name].parse_options(sub)
        return SurfaceOptions(plugins=tuple(dict.fromkeys(chosen)), per_plugin=per_plugin)

    async def check_addresses(self, target: ParsedTarget, options: SurfaceOptions) -> None:
        skipped = {name: why for name in options.plugins if (why := self.skip_reason(name, target)) is not None}
        if len(skipped) == len(options.plugins):
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
            raise ValidationError(f"no chosen surface plugin can scan {target}: {reasons}")
        # As in run(): a name without an address still gets the dns checks (a mail-only domain),
        # so it is refused only when every chosen plugin connects; a refused address always is.
        needs_address = [self.plugins[name].connects for name in options.plugins if name not in skipped]
        if any(needs_address):
            await self.check_target_resolution(target, allow_unresolvable=not all(needs_address))

    async def check(self, *, target: ParsedTarget, session: Session | None, options: SurfaceOptions) -> PluginReport:
        raise NotImplementedError("surface runs its plugins itself; see run()")

    def skip_reason(self, name: str, target: ParsedTarget) -> str | None:
        """Why plugin ``name`` cannot take ``target`` (reported as ``skipped``), or None when it can."""
        plugin = self.plugins[name]
        if target.is_ip and not plugin.accepts_ip:
            return "needs a domain name, the target is an IP address"
        if not plugin.connects and not target.is_ip and internal_name_refusal(target.host) is not None:
            # Accepted only because the operator's hosts file lists it: public DNS knows nothing of it.
            return f"{target.host} is an internal name from the hosts file, not a public domain"
        return None

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        parsed, opts = self._revalidate(target, options)
        session, session_error = await self._open_or_error(parsed)
        timeout_s = self.plugin_timeout_s
        names = list(opts.plugins)
        outcomes = await asyncio.gather(
            *(self._run_one(name, parsed, session, session_error, opts.per_plugin[name], timeout_s) for name in names)
        )
        statuses = {name: status for name, (status, _) in zip(names, outcomes, strict=True)}
        reports = {name: report for name, (_, report) in zip(names, outcomes, strict=True) if report is not None}
        if not reports:
            errors = [o[0] for o in outcomes]
            raise (TransientScanError if _any_transient(errors) else ScannerError)(
                "no scanner could run: " + "; ".join(f"{n}: {s}" for n, s in statuses.items())
            )
        findings = tuple(f for report in reports.values() for f in report.findings)
        grading = grade(findings, not_run=[name for name, status in statuses.items() if status.startswith("error")])
        logger.info("scan %s: surface on %s: %s", scan_id, parsed, grading)
        return ScanReport(
            scanner=PLUGIN,
            target=str(parsed),
            addresses=tuple(str(a) for a in session.addresses) if session is not None else (),
            plugins=statuses,
            findings=findings,
            details={name: report.details for name, report in reports.items() if report.details},
            extra=grading,
        ).to_dict()

    async def _open_or_error(self, target: ParsedTarget) -> tuple[Session | None, str | None]:
        """The shared session; a refused target fails the scan, an unresolvable one only the network plugins."""
        try:
            return await open_session(target, settings=self.settings, policy=self.policy, hosts=self.hosts), None
        except TargetRefused as exc:
            raise ScannerError(exc.message) from None
        except ScannerError as exc:  # the plugins' status says so; a transient one makes the scan retried
            return None, exc.message + (" (transient)" if isinstance(exc, TransientScanError) else "")

    async def _run_one(
        self,
        name: str,
        target: ParsedTarget,
        session: Session | None,
        session_error: str | None,
        options: Any,
        timeout_s: float,
    ) -> tuple[str, PluginReport | None]:
        plugin = self.plugins[name]
        skipped = self.skip_reason(name, target)
        if skipped is not None:
            return f"skipped: {skipped}", None
        if plugin.connects and session is None:
            return f"error: {session_error}", None
        try:
            report = await run_with_timeout(
                plugin.check(target=target, session=session if plugin.connects else None, options=options), timeout_s
            )
        except TransientScanError as exc:
            return f"error: {exc.message} (transient)", None
        except ScanqError as exc:
            return f"error: {exc.message}", None
        except Exception as exc:  # one plugin's bug must not hide the others' findings
            logger.exception("scanner %s failed on %s", name, target)
            return f"error: internal error ({type(exc).__name__})", None
        return "ok", report


def _any_transient(statuses: list[str]) -> bool:
    return any(s.endswith("(transient)") for s in statuses)


def grade(findings: tuple[Finding, ...], *, not_run: list[str]) -> dict[str, Any]:
    """The grading part of a surface result: a score and a grade only when every chosen plugin ran.

    A plugin that could not run (``error: …`` in ``plugins``) leaves part of the target unscanned,
    and a grade would look better than the target may be: ``not_graded`` names those plugins instead.
    A skipped plugin (dns on an IP address) has nothing to scan and does not count.
    """
    if not_run:
        return {"scoring_version": SCORING_VERSION, "score_complete": False, "not_graded": not_run}
    score, letter = score_findings(findings)
    return {"score": score, "grade": letter, "scoring_version": SCORING_VERSION, "score_complete": True}


def score_findings(findings: tuple[Finding, ...] | list[Finding]) -> tuple[int, str]:
    """The score (0-100) and grade (A-F) of a set of findings, by ``SCORING_VERSION`` rules."""
    failed = [f for f in findings if f.status == Status.FAIL]
    score = max(0, 100 - sum(DEDUCTIONS[f.severity] for f in failed))
    grade = next(letter for letter, floor in GRADES if score >= floor)
    if any(f.severity == Severity.CRITICAL for f in failed) and grade < CRITICAL_GRADE_CAP:
        grade = CRITICAL_GRADE_CAP
    return score, grade
