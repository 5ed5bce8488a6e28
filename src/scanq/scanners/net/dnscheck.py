"""The ``dns`` scanner: mail-domain hygiene (SPF, DMARC, MX) and DNSSEC.

It asks a recursive resolver (``--scanner-nameservers``, else the system's) and
never connects to the target, so the target is not resolved against the
address rules, neither at submit time nor at run time; it must still be a
well-formed, non-internal domain name.
DMARC is read at ``_dmarc.<domain>`` only (no organisational-domain fallback).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from scanq.exceptions import TransientScanError
from scanq.scanners.net.connect import Session
from scanq.scanners.net.dnsresolver import make_resolver
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, reject_unknown
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "dns"
SPF_MAX_LOOKUPS = 10  # RFC 7208 section 4.6.4
SPF_MAX_DEPTH = 10
SPF_MAX_QUERIES = 30  # our own bound on TXT queries while counting, whatever the record says
_SPF_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})


def _check(check_id: str, severity: Severity, title: str, remediation: str) -> Check:
    return Check(check_id=check_id, plugin=PLUGIN, severity=severity, title=title, remediation=remediation)


SPF_PRESENT = _check(
    "dns.spf.present", Severity.MEDIUM, "No SPF record", "Publish a TXT record 'v=spf1 … -all' for the domain."
)
SPF_SINGLE = _check(
    "dns.spf.single",
    Severity.MEDIUM,
    "More than one SPF record (SPF permerror)",
    "Merge the SPF records into one TXT record.",
)
SPF_ALL = _check(
    "dns.spf.all_mechanism",
    Severity.HIGH,
    "SPF does not reject unlisted senders (+all / ?all / no all)",
    "End the SPF record with '-all' (or '~all' while testing).",
)
SPF_LOOKUPS = _check(
    "dns.spf.lookup_limit",
    Severity.MEDIUM,
    f"SPF needs more than {SPF_MAX_LOOKUPS} DNS lookups (SPF permerror)",
    "Flatten includes or drop unused mechanisms (a, mx, ptr, include, exists, redirect count).",
)
DMARC_PRESENT = _check(
    "dns.dmarc.present",
    Severity.MEDIUM,
    "No DMARC record",
    "Publish 'v=DMARC1; p=quarantine; rua=mailto:…' at _dmarc.<domain>.",
)
DMARC_POLICY = _check(
    "dns.dmarc.policy",
    Severity.MEDIUM,
    "DMARC policy does not act on spoofed mail (p=none)",
    "Move the DMARC policy to p=quarantine, then p=reject.",
)
MX_PRESENT = _check(
    "dns.mx.present",
    Severity.LOW,
    "No MX record",
    "Publish MX records, or a null MX ('0 .') if the domain receives no mail.",
)
DNSSEC_SIGNED = _check(
    "dns.dnssec.signed",
    Severity.LOW,
    "Zone is not DNSSEC-signed (no DS at the parent)",
    "Sign the zone and publish its DS record at the registrar.",
)
CHECKS = (SPF_PRESENT, SPF_SINGLE, SPF_ALL, SPF_LOOKUPS, DMARC_PRESENT, DMARC_POLICY, MX_PRESENT, DNSSEC_SIGNED)


@dataclass(frozen=True, kw_only=True, slots=True)
class DnsOptions:
    """The dns scanner takes no options."""


@dataclass(kw_only=True, slots=True)
class _SpfCount:
    lookups: int = 0
    queries: int = 0
    notes: list[str] = field(default_factory=list)


class DnsScanner(TargetScanner[DnsOptions]):
    """Checks a mail domain's SPF, DMARC and MX records and whether its zone is signed."""

    name = PLUGIN
    connects = False
    accepts_ip = False

    def parse_options(self, options: Mapping[str, Any]) -> DnsOptions:
        reject_unknown(options, set(), plugin=PLUGIN)
        return DnsOptions()

    async def check(self, *, target: ParsedTarget, session: Session | None, options: DnsOptions) -> PluginReport:
        resolver = make_resolver(self.settings.nameservers, query_timeout_s=self.settings.connect_timeout_seconds)
        domain = target.host
        asset = Asset(host=domain)
        report = PluginReport()
        spf_records = [t for t in await txt_records(resolver, domain) if _is_spf(t)]
        report.findings += await _spf_findings(resolver, domain, spf_records, asset, report.details)
        report.findings += await _dmarc_findings(resolver, domain, asset, report.details)
        report.findings.append(await _mx_finding(resolver, domain, asset, report.details))
        report.findings.append(await _dnssec_finding(resolver, domain, asset, report.details))
        return report


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> dns.resolver.Answer | None:
    """An answer, or None for NXDOMAIN / no data; raise ``TransientScanError`` when the resolver fails."""
    try:
        return await resolver.resolve(name.rstrip(".") + ".", rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise TransientScanError(f"DNS {rdtype} query for {name} failed: {exc}") from None


async def txt_records(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """Every TXT record at ``name``, each one's strings joined."""
    answer = await _query(resolver, name, "TXT")
    if answer is None:
        return []
    return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]


def _is_spf(text: str) -> bool:
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


async def _spf_findings(
    resolver: dns.asyncresolver.Resolver, domain: str, records: list[str], asset: Asset, details: dict[str, Any]
) -> list[Finding]:
    details["spf"] = records
    if not records:
        return [SPF_PRESENT.finding(passed=False, asset=asset, expected="one v=spf1 record", actual="none")]
    findings = [
        SPF_PRESENT.finding(passed=True, asset=asset, expected="one v=spf1 record", actual=records[0]),
        SPF_SINGLE.finding(
            passed=len(records) == 1, asset=asset, expected="exactly one", actual=f"{len(records)} SPF records"
        ),
    ]
    if len(records) > 1:
        return findings
    record = records[0]
    qualifier = spf_all_qualifier(record)
    all_passed = qualifier in ("-", "~") or (qualifier is None and "redirect=" in record.lower())
    # +all lets anyone send as the domain (high); ?all or no all only fails to say no (medium).
    severity = None if all_passed or qualifier == "+" else Severity.MEDIUM
    all_actual = f"{qualifier}all" if qualifier else ("redirect=" if "redirect=" in record.lower() else "no all")
    findings.append(
        SPF_ALL.finding(
            passed=all_passed,
            asset=asset,
            expected="-all or ~all",
            actual=all_actual,
            severity=severity,
        )
    )
    count = _SpfCount()
    await count_spf_lookups(resolver, record, count=count, depth=0, seen={domain})
    details["spf_lookups"] = count.lookups
    if count.notes:
        details["spf_notes"] = count.notes
    findings.append(
        SPF_LOOKUPS.finding(
            passed=count.lookups <= SPF_MAX_LOOKUPS,
            asset=asset,
            expected=f"at most {SPF_MAX_LOOKUPS} lookups",
            actual=f"{count.lookups}{'+' if count.notes else ''} lookups",
        )
    )
    return findings


def spf_all_qualifier(record: str) -> str | None:
    """The qualifier of the record's ``all`` mechanism (``+``, ``-``, ``~``, ``?``), or None without one."""
    for term in record.split()[1:]:
        qualifier, mechanism = (term[0], term[1:]) if term[0] in "+-~?" else ("+", term)
        if mechanism.lower() == "all":
            return qualifier
    return None


async def count_spf_lookups(
    resolver: dns.asyncresolver.Resolver, record: str, *, count: _SpfCount, depth: int, seen: set[str]
) -> None:
    """Add the DNS-querying terms of ``record`` and of what it includes/redirects to, recursively, bounded."""
    for term in record.split()[1:]:
        body = term[1:] if term[0] in "+-~?" else term
        name, _, argument = body.partition("=") if body.lower().startswith("redirect=") else body.partition(":")
        mechanism = name.split("/", 1)[0].lower()
        if mechanism not in _SPF_LOOKUP_TERMS:
            continue
        count.lookups += 1
        if mechanism not in ("include", "redirect") or count.lookups > SPF_MAX_LOOKUPS:
            continue
        included = argument.lower().rstrip(".")
        if not included or "%" in included:
            count.notes.append(f"{term}: not followed (macro or empty)")
            continue
        if depth >= SPF_MAX_DEPTH or count.queries >= SPF_MAX_QUERIES or included in seen:
            count.notes.append(f"{term}: not followed (depth, query budget or loop)")
            continue
        seen.add(included)
        count.queries += 1
        nested = [t for t in await txt_records(resolver, included) if _is_spf(t)]
        if len(nested) == 1:
            await count_spf_lookups(resolver, nested[0], count=count, depth=depth + 1, seen=seen)
        else:
            count.notes.append(f"{term}: {len(nested)} SPF records there")


async def _dmarc_findings(
    resolver: dns.asyncresolver.Resolver, domain: str, asset: Asset, details: dict[str, Any]
) -> list[Finding]:
    records = [t for t in await txt_records(resolver, f"_dmarc.{domain}") if t.lower().startswith("v=dmarc1")]
    details["dmarc"] = records
    if len(records) != 1:
        actual = "none" if not records else f"{len(records)} records (ignored by receivers)"
        return [DMARC_PRESENT.finding(passed=False, asset=asset, expected="one v=DMARC1 record", actual=actual)]
    tags = dmarc_tags(records[0])
    policy = tags.get("p", "")
    return [
        DMARC_PRESENT.finding(passed=True, asset=asset, expected="one v=DMARC1 record", actual=records[0]),
        DMARC_POLICY.finding(
            passed=policy in ("quarantine", "reject"),
            asset=asset,
            expected="p=quarantine or p=reject",
            actual=f"p={policy}" if policy else "no p= tag",
        ),
    ]


def dmarc_tags(record: str) -> dict[str, str]:
    """``tag=value`` pairs of a DMARC record, tags and values lowercased."""
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip().lower()
    return tags


async def _mx_finding(
    resolver: dns.asyncresolver.Resolver, domain: str, asset: Asset, details: dict[str, Any]
) -> Finding:
    answer = await _query(resolver, domain, "MX")
    exchanges = sorted((rr.preference, rr.exchange.to_text()) for rr in answer) if answer is not None else []
    details["mx"] = [f"{pref} {host}" for pref, host in exchanges]
    if not exchanges:
        return MX_PRESENT.finding(passed=False, asset=asset, expected="MX records (or a null MX)", actual="none")
    null_mx = exchanges == [(0, ".")]
    actual = "null MX (receives no mail)" if null_mx else ", ".join(details["mx"])
    return MX_PRESENT.finding(passed=True, asset=asset, expected="MX records (or a null MX)", actual=actual)


async def _dnssec_finding(
    resolver: dns.asyncresolver.Resolver, domain: str, asset: Asset, details: dict[str, Any]
) -> Finding:
    zone = await _zone_of(resolver, domain)
    answer = await _query(resolver, zone, "DS")
    details["zone"] = zone
    count = len(answer) if answer is not None else 0
    return DNSSEC_SIGNED.finding(
        passed=count > 0,
        asset=asset,
        expected=f"DS records for {zone} at its parent",
        actual=f"{count} DS record(s)" if count else "no DS record",
    )


async def _zone_of(resolver: dns.asyncresolver.Resolver, domain: str) -> str:
    """The zone apex holding ``domain`` (where its SOA is); the domain itself if that cannot be told."""
    try:
        zone = await dns.asyncresolver.zone_for_name(domain + ".", resolver=resolver)
    except dns.exception.DNSException:
        return domain
    return zone.to_text(omit_final_dot=True) or domain
