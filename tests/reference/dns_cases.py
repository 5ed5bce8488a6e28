"""The DNS lab's cases: one domain each, built to show one SPF, DMARC or DNSSEC property.

Every case starts from a sound domain (``base_records``: SPF ``mx -all``, an MX with an address,
DMARC ``p=reject``, a validly signed zone) and changes one thing. ``fails`` names the verdicts the
change must turn to failures (both tools agreeing), among:

- ``spf``: the SPF record is usable (one record, no permerror: lookups, void lookups, includes,
  loops, syntax); checkdmarc ``check_spf(...)["valid"]``;
- ``all``: the record ends by refusing unlisted senders (``-all``/``~all``); checkdmarc's
  ``parsed["all"]`` is ``fail`` or ``softfail``;
- ``dmarc``: one valid DMARC record applies (at the domain, else the organisational domain);
  checkdmarc ``check_dmarc(...)["valid"]``;
- ``policy``: the applicable policy (``p``, or ``sp`` from the organisational domain) is
  quarantine or reject; from checkdmarc's tags;
- ``dnssec``: the zone is signed and validates; checkdmarc ``check_dnssec``.

``na`` names verdicts that do not apply (no single SPF record to read ``all`` from); ``differs``
names a verdict where scanq deliberately disagrees with checkdmarc (docs/scanners.md), with the id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.reference.dns_lab import Lab, Record, txt

VERDICTS = ("spf", "all", "dmarc", "policy", "dnssec")


@dataclass(frozen=True)
class DnsCase:
    """One domain of the lab and what it shows (see the module docstring)."""

    id: str
    rule: str
    spf: str | None = "v=spf1 mx -all"
    dmarc: str | None = "v=DMARC1; p=reject"
    extra: tuple[Record, ...] = ()
    sign: dict[str, Any] | None = field(default_factory=dict)  # Lab.sign keywords; None: unsigned
    sub: str = ""  # scan this label under the zone (the zone is the case's apex)
    fails: frozenset[str] = frozenset()
    na: frozenset[str] = frozenset()
    differs: dict[str, str] = field(default_factory=dict)

    @property
    def zone(self) -> str:
        return f"{self.id}.test"

    @property
    def domain(self) -> str:
        return f"{self.sub}.{self.zone}" if self.sub else self.zone

    def expected(self, verdict: str) -> bool:
        return verdict not in self.fails


def base_records(case: DnsCase) -> list[Record]:
    zone, domain = case.zone, case.domain
    records: list[Record] = [
        (zone, "SOA", f"ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60"),
        (domain, "MX", f"10 mx.{zone}."),
        (f"mx.{zone}", "A", "192.0.2.25"),
    ]
    if case.spf is not None:
        records.append((domain, "TXT", txt(case.spf)))
    if case.dmarc is not None:
        records.append((f"_dmarc.{zone}", "TXT", txt(case.dmarc)))
    return records + list(case.extra)


def build_lab(cases: list[DnsCase]) -> Lab:
    """One lab serving every case's zone."""
    lab = Lab()
    for case in cases:
        lab.add(*base_records(case))
    for case in cases:
        if case.sign is not None:
            lab.sign(case.zone, **case.sign)
    return lab


def _hosts(zone: str, count: int) -> tuple[Record, ...]:
    return tuple((f"h{i}.{zone}", "A", f"192.0.2.{i}") for i in range(1, count + 1))


def _a_terms(zone: str, count: int, prefix: str = "h") -> str:
    return " ".join(f"a:{prefix}{i}.{zone}" for i in range(1, count + 1))


SPF, ALL, DMARC, POLICY, DNSSEC = (frozenset({v}) for v in VERDICTS)

CASES: list[DnsCase] = [
    DnsCase("good", "all sound: RFC 7208, RFC 7489, RFC 4035"),
    # --- SPF (RFC 7208) ----------------------------------------------------------------------------
    DnsCase("spf-none", "no v=spf1 record: SPF none", spf=None, fails=SPF, na=ALL),
    DnsCase(
        "spf-two-records",
        "section 4.5: two records -> permerror",
        extra=(("spf-two-records.test", "TXT", txt("v=spf1 -all")),),
        fails=SPF,
        na=ALL,
    ),
    DnsCase("spf-plus-all", "section 5.1: +all passes every sender", spf="v=spf1 mx +all", fails=ALL),
    DnsCase("spf-neutral-all", "section 5.1: ?all says nothing of unlisted senders", spf="v=spf1 mx ?all", fails=ALL),
    DnsCase("spf-softfail-all", "section 5.1: ~all (softfail) is accepted", spf="v=spf1 mx ~all"),
    DnsCase(
        "spf-ten-lookups",
        "section 4.6.4: 10 DNS-querying terms are allowed",
        spf=f"v=spf1 {_a_terms('spf-ten-lookups.test', 10)} -all",
        extra=_hosts("spf-ten-lookups.test", 10),
    ),
    DnsCase(
        "spf-eleven-lookups",
        "section 4.6.4: more than 10 DNS-querying terms -> permerror",
        spf=f"v=spf1 {_a_terms('spf-eleven-lookups.test', 11)} -all",
        extra=_hosts("spf-eleven-lookups.test", 11),
        fails=SPF,
    ),
    DnsCase(
        "spf-two-void-lookups",
        "section 4.6.4: two void lookups are allowed",
        spf="v=spf1 a:nx1.spf-two-void-lookups.test mx:nx2.spf-two-void-lookups.test -all",
    ),
    DnsCase(
        "spf-three-void-lookups",
        "section 4.6.4: more than two void lookups -> permerror",
        spf="v=spf1 a:nx1.spf-three-void-lookups.test a:nx2.spf-three-void-lookups.test "
        "a:nx3.spf-three-void-lookups.test -all",
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-include-without-spf",
        "section 5.2: include of a name without an SPF record -> permerror",
        spf="v=spf1 include:vendor.spf-include-without-spf.test -all",
        extra=(("vendor.spf-include-without-spf.test", "TXT", txt("vendor-verification=1")),),
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-include-nxdomain",
        "section 5.2: include of a name that does not exist -> permerror",
        spf="v=spf1 include:gone.spf-include-nxdomain.test -all",
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-include-loop",
        "section 4.6.4: an include loop exceeds the lookup limit -> permerror",
        spf="v=spf1 include:a.spf-include-loop.test -all",
        extra=(
            ("a.spf-include-loop.test", "TXT", txt("v=spf1 include:b.spf-include-loop.test -all")),
            ("b.spf-include-loop.test", "TXT", txt("v=spf1 include:a.spf-include-loop.test -all")),
        ),
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-include-ok",
        "section 5.2: include of a name with one SPF record",
        spf="v=spf1 include:_spf.spf-include-ok.test -all",
        extra=(("_spf.spf-include-ok.test", "TXT", txt("v=spf1 ip4:198.51.100.0/24 -all")),),
    ),
    DnsCase(
        "spf-redirect-ok",
        "section 6.1: redirect= to a name with one SPF record ending in -all",
        spf="v=spf1 redirect=_spf.spf-redirect-ok.test",
        extra=(("_spf.spf-redirect-ok.test", "TXT", txt("v=spf1 mx -all")),),
    ),
    DnsCase(
        "spf-redirect-without-spf",
        "section 6.1: redirect= to a name without an SPF record -> permerror",
        spf="v=spf1 redirect=_spf.spf-redirect-without-spf.test",
        extra=(("_spf.spf-redirect-without-spf.test", "TXT", txt("not spf")),),
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-unknown-mechanism",
        "sections 4.6.1 and 12: an unknown mechanism -> permerror",
        spf="v=spf1 mx foo:bar -all",
        fails=SPF,
        na=ALL,
    ),
    DnsCase(
        "spf-bad-ip4",
        "section 5.6: an ip4 network that is not an address -> permerror",
        spf="v=spf1 ip4:300.1.2.3 -all",
        fails=SPF,
        na=ALL,
    ),
    # --- DMARC (RFC 7489) --------------------------------------------------------------------------
    DnsCase(
        "dmarc-none",
        "section 6.6.3: no record at the domain or its organisational domain",
        dmarc=None,
        fails=DMARC | POLICY,
    ),
    DnsCase("dmarc-p-none", "section 6.3: p=none asks for no action", dmarc="v=DMARC1; p=none", fails=POLICY),
    DnsCase("dmarc-quarantine", "section 6.3: p=quarantine", dmarc="v=DMARC1; p=quarantine; pct=100"),
    DnsCase(
        "dmarc-two-records",
        "section 6.6.3 step 5: several records -> no DMARC",
        extra=(("_dmarc.dmarc-two-records.test", "TXT", txt("v=DMARC1; p=none")),),
        fails=DMARC | POLICY,
    ),
    DnsCase(
        "dmarc-from-org-domain",
        "section 6.6.3 step 3: none at the subdomain, the organisational domain's applies",
        sub="mail",
    ),
    DnsCase(
        "dmarc-org-sp-none",
        "section 6.3: sp= is the organisational domain's policy for its subdomains",
        sub="mail",
        dmarc="v=DMARC1; p=reject; sp=none",
        fails=POLICY,
    ),
    DnsCase(
        "dmarc-sub-own-record",
        "section 6.6.3 step 1: the subdomain's own record comes first",
        sub="mail",
        dmarc="v=DMARC1; p=none",
        extra=(("_dmarc.mail.dmarc-sub-own-record.test", "TXT", txt("v=DMARC1; p=quarantine")),),
    ),
    # --- DNSSEC (RFC 4033-4035) --------------------------------------------------------------------
    DnsCase("dnssec-unsigned", "RFC 4033 section 4.3: no DS at the parent -> insecure", sign=None, fails=DNSSEC),
    DnsCase(
        "dnssec-keys-without-ds",
        "RFC 4033 section 4.3: a signed zone without a DS at the parent is still insecure",
        sign={"publish_ds": False},
        fails=DNSSEC,
    ),
    DnsCase(
        "dnssec-ds-without-dnskey",
        "RFC 4035 section 5.2: DS but no DNSKEY -> bogus",
        sign={"publish_dnskey": False},
        fails=DNSSEC,
    ),
    DnsCase(
        "dnssec-ds-mismatch",
        "RFC 4035 section 5.2: no DNSKEY matches the DS -> bogus",
        sign={"ds_matches": False},
        fails=DNSSEC,
    ),
    DnsCase(
        "dnssec-dnskey-unsigned",
        "RFC 4035 section 5.2: the DNSKEY set carries no RRSIG -> bogus",
        sign={"sign_dnskey": False},
        fails=DNSSEC,
    ),
    DnsCase(
        "dnssec-expired",
        "RFC 4035 section 5.3.1: every signature expired -> bogus",
        sign={"expired": True},
        fails=DNSSEC,
    ),
    DnsCase(
        "dnssec-records-unsigned",
        "RFC 4035 section 5.3: the zone's records carry no RRSIG -> bogus",
        sign={"sign_records": False},
        fails=DNSSEC,
        differs={"dnssec": "dns-dnssec-unsigned-records"},
    ),
    DnsCase(
        "dnssec-subdomain",
        "RFC 4035: a name below a signed apex is covered by its keys",
        sub="www",
    ),
]
NONEXISTENT = "nowhere-at-all.test"
