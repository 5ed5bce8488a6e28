"""The ``dns`` scanner: mail-domain hygiene (SPF, DMARC, MX) and DNSSEC.

It asks a recursive resolver (``--scanner-nameservers``, else the system's) and
never connects to the target, so the target is not resolved against the
address rules, neither at submit time nor at run time; it must still be a
well-formed, non-internal domain name. A domain that does not exist (NXDOMAIN)
fails the scan (``ScannerError``): there is nothing to grade.

Questions go with CD (checking disabled): a validating resolver then answers for
a zone whose DNSSEC is broken, which is reported as such (``dnssec.py``) instead
of failing every question. SPF is walked as a receiver would (``spf.py``). DMARC is
read at ``_dmarc.<domain>``, else at ``_dmarc.<organisational domain>`` (RFC 7489
section 6.6.3), found with the Public Suffix List snapshot shipped in the
``publicsuffixlist`` package (never downloaded at run time).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
from publicsuffixlist import PublicSuffixList

from scanq.exceptions import ScannerError
from scanq.scanners.net.connect import Session
from scanq.scanners.net.dnsquery import ask, txt
from scanq.scanners.net.dnsresolver import make_resolver
from scanq.scanners.net.dnssec import DnssecState, checking_disabled, judge_zone
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, reject_unknown
from scanq.scanners.net.spf import SPF_MAX_LOOKUPS, SPF_MAX_VOID_LOOKUPS, is_spf, walk_spf
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "dns"


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
SPF_VALID = _check(
    "dns.spf.valid",
    Severity.MEDIUM,
    "SPF record evaluates to a permanent error (receivers ignore it)",
    "Fix the record: every include/redirect must name a domain with one SPF record, no more than "
    f"{SPF_MAX_VOID_LOOKUPS} a/mx/include names may be empty or missing, and every term must be valid.",
)
DMARC_PRESENT = _check(
    "dns.dmarc.present",
    Severity.MEDIUM,
    "No DMARC record",
    "Publish 'v=DMARC1; p=quarantine; rua=mailto:…' at _dmarc.<domain> (or at the organisational domain).",
)
DMARC_POLICY = _check(
    "dns.dmarc.policy",
    Severity.MEDIUM,
    "DMARC policy does not act on spoofed mail (p=none)",
    "Move the DMARC policy to p=quarantine, then p=reject (sp= too, for subdomains).",
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
    "Sign the zone and publish its DS record at the registrar; keep the DS matching a published, "
    "signed DNSKEY (remove the DS before unsigning).",
)
DNSSEC_BOGUS_TITLE = "Zone's DNSSEC is broken (bogus): validating resolvers refuse its answers"
CHECKS = (
    SPF_PRESENT,
    SPF_SINGLE,
    SPF_ALL,
    SPF_LOOKUPS,
    SPF_VALID,
    DMARC_PRESENT,
    DMARC_POLICY,
    MX_PRESENT,
    DNSSEC_SIGNED,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class DnsOptions:
    """The dns scanner takes no options."""


class DnsScanner(TargetScanner[DnsOptions]):
    """Checks a mail domain's SPF, DMARC and MX records and whether its zone is signed."""

    name = PLUGIN
    connects = False
    accepts_ip = False

    def parse_options(self, options: Mapping[str, Any]) -> DnsOptions:
        reject_unknown(options, set(), plugin=PLUGIN)
        return DnsOptions()

    async def check(self, *, target: ParsedTarget, session: Session | None, options: DnsOptions) -> PluginReport:
        resolver = self._resolver()
        resolver.flags = dns.flags.RD | dns.flags.CD
        domain = target.host
        asset = Asset(host=domain)
        report = PluginReport()
        texts = await txt(resolver, domain)
        if texts.nxdomain:
            raise ScannerError(f"{domain} does not exist (NXDOMAIN)")
        parts: list[Coroutine[Any, Any, list[Finding]]] = [
            _spf_findings(resolver, domain, [t for t in texts.records if is_spf(t)], asset, report.details),
            _dmarc_findings(resolver, domain, asset, report.details),
            _mx_findings(resolver, domain, asset, report.details),
            _dnssec_findings(resolver, checking_disabled(self._resolver()), domain, asset, report.details),
        ]
        # Together, and all finished before a failure is raised (no stray question left running).
        results = await asyncio.gather(*parts, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            report.findings += result
        return report

    def _resolver(self) -> dns.asyncresolver.Resolver:
        return make_resolver(self.settings.nameservers, query_timeout_s=self.settings.connect_timeout_seconds)


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
        SPF_ALL.finding(passed=all_passed, asset=asset, expected="-all or ~all", actual=all_actual, severity=severity)
    )
    walk = await walk_spf(resolver, domain, record)
    details["spf_lookups"] = walk.lookups
    details["spf_void_lookups"] = walk.void_lookups
    if walk.notes:
        details["spf_notes"] = walk.notes
    errors = walk.permerrors
    if errors:
        details["spf_errors"] = errors
    findings.append(
        SPF_LOOKUPS.finding(
            passed=walk.lookups <= SPF_MAX_LOOKUPS,
            asset=asset,
            expected=f"at most {SPF_MAX_LOOKUPS} lookups",
            actual=f"{walk.lookups}{'+' if walk.notes else ''} lookups",
        )
    )
    findings.append(
        SPF_VALID.finding(
            passed=not errors,
            asset=asset,
            expected=f"no permerror (includes resolve, at most {SPF_MAX_VOID_LOOKUPS} void lookups, valid terms)",
            actual="; ".join(errors) if errors else f"no permerror ({walk.void_lookups} void lookups)",
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


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # the snapshot the package ships: no download


def organisational_domain(domain: str) -> str:
    """The registered domain above ``domain`` by the Public Suffix List (RFC 7489 section 3.2)."""
    found: str | None = _public_suffix_list().privatesuffix(domain)
    return found or domain


async def _dmarc_records(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    reply = await txt(resolver, f"_dmarc.{domain}")
    return [t for t in reply.records if t.lower().replace(" ", "").startswith("v=dmarc1")]


async def _dmarc_findings(
    resolver: dns.asyncresolver.Resolver, domain: str, asset: Asset, details: dict[str, Any]
) -> list[Finding]:
    records, location = await _dmarc_records(resolver, domain), domain
    if not records and (organisational := organisational_domain(domain)) != domain:
        # RFC 7489 section 6.6.3: none at the domain itself, so the organisational domain's applies.
        records, location = await _dmarc_records(resolver, organisational), organisational
    details["dmarc"] = records
    where = "" if location == domain else f" (at {location}, the organisational domain)"
    if location != domain:
        details["dmarc_location"] = location
    if len(records) != 1:
        actual = "none" if not records else f"{len(records)} records (ignored by receivers)"
        return [DMARC_PRESENT.finding(passed=False, asset=asset, expected="one v=DMARC1 record", actual=actual + where)]
    tags = dmarc_tags(records[0])
    # A subdomain covered from the organisational domain gets its sp= policy, else p= (section 6.3).
    tag = "sp" if location != domain and "sp" in tags else "p"
    policy = tags.get(tag, "")
    return [
        DMARC_PRESENT.finding(passed=True, asset=asset, expected="one v=DMARC1 record", actual=records[0] + where),
        DMARC_POLICY.finding(
            passed=policy in ("quarantine", "reject"),
            asset=asset,
            expected="p=quarantine or p=reject (sp= for a subdomain)",
            actual=(f"{tag}={policy}" if policy else "no p= tag") + where,
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


async def _mx_findings(
    resolver: dns.asyncresolver.Resolver, domain: str, asset: Asset, details: dict[str, Any]
) -> list[Finding]:
    reply = await ask(resolver, domain, "MX")
    exchanges = sorted((rr.preference, rr.exchange.to_text()) for rr in reply.records)
    details["mx"] = [f"{pref} {host}" for pref, host in exchanges]
    expected = "MX records (or a null MX)"
    if not exchanges:
        return [MX_PRESENT.finding(passed=False, asset=asset, expected=expected, actual="none")]
    actual = "null MX (receives no mail)" if exchanges == [(0, ".")] else ", ".join(details["mx"])
    return [MX_PRESENT.finding(passed=True, asset=asset, expected=expected, actual=actual)]


async def _dnssec_findings(
    resolver: dns.asyncresolver.Resolver,
    signed_resolver: dns.asyncresolver.Resolver,
    domain: str,
    asset: Asset,
    details: dict[str, Any],
) -> list[Finding]:
    zone = await _zone_of(resolver, domain)
    details["zone"] = zone
    verdict = await judge_zone(signed_resolver, zone)
    details["dnssec"] = str(verdict.state)
    bogus = verdict.state == DnssecState.BOGUS
    return [
        DNSSEC_SIGNED.finding(
            passed=verdict.state == DnssecState.SIGNED,
            asset=asset,
            expected=f"DS records for {zone} at its parent, matching its signed DNSKEY",
            actual=f"{verdict.state}: {verdict.detail}",
            severity=Severity.HIGH if bogus else None,
            title=DNSSEC_BOGUS_TITLE if bogus else None,
        )
    ]


async def _zone_of(resolver: dns.asyncresolver.Resolver, domain: str) -> str:
    """The zone apex holding ``domain`` (where its SOA is); the domain itself if that cannot be told."""
    try:
        zone = await dns.asyncresolver.zone_for_name(domain + ".", resolver=resolver)
    except dns.exception.DNSException:
        return domain
    return zone.to_text(omit_final_dot=True) or domain
