"""Is a zone's DNSSEC chain sound from the parent's DS down to its records? (RFC 4033-4035)

The parent vouches for a zone with DS records. A zone with none is **unsigned** (insecure,
RFC 4033 section 4.3), whatever keys it publishes. A zone with some must answer with a DNSKEY set
that holds a key matching a DS, signed (RRSIG) by that key, and its SOA must carry a valid
signature by one of its keys; otherwise it is **bogus**: validating resolvers (most public ones)
answer SERVFAIL for every name in it. Signatures are checked at the current time, so expired
ones are bogus too. A zone whose DS-matched keys use only algorithms this library may not
validate is treated as unsigned, as validators treat it (RFC 4035 section 5.2).

The questions go with DO (send signatures) and CD (checking disabled), so a validating resolver
returns a bogus zone's records for us to judge instead of SERVFAIL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.dnssec
import dns.exception
import dns.flags
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import DSDigest

from scanq.scanners.net.dnsquery import Reply, ask

EDNS_PAYLOAD_BYTES = 1232  # the DNS flag day 2020 size: no fragmentation


class DnssecState(enum.StrEnum):
    """What a validator makes of a zone."""

    UNSIGNED = "unsigned"
    SIGNED = "signed"
    BOGUS = "bogus"


@dataclass(frozen=True, kw_only=True, slots=True)
class DnssecVerdict:
    """The state and the evidence for it."""

    state: DnssecState
    detail: str


def checking_disabled(resolver: dns.asyncresolver.Resolver) -> dns.asyncresolver.Resolver:
    """``resolver`` set to ask with DO and CD (signatures wanted, no validation by the resolver)."""
    resolver.use_edns(0, dns.flags.DO, EDNS_PAYLOAD_BYTES)
    resolver.flags = dns.flags.RD | dns.flags.CD
    return resolver


async def judge_zone(resolver: dns.asyncresolver.Resolver, zone: str) -> DnssecVerdict:
    """The DNSSEC state of ``zone`` (its apex), asking ``resolver`` (see ``checking_disabled``)."""
    ds = await ask(resolver, zone, "DS")
    if not ds.records:
        return DnssecVerdict(state=DnssecState.UNSIGNED, detail="no DS record at the parent")
    name = dns.name.from_text(zone.rstrip(".") + ".")
    keys_reply = await ask(resolver, zone, "DNSKEY")
    keys, keys_sig = _rrset(keys_reply, name, dns.rdatatype.DNSKEY)
    count = f"{len(ds.records)} DS record(s) at the parent"
    if keys is None:
        return _bogus(f"{count} but no DNSKEY record")
    if keys_sig is None:
        return _bogus(f"{count} but the DNSKEY set is not signed")
    matched = _matched_keys(name, ds.records, keys)
    if not matched:
        return _bogus(f"{count} but no DNSKEY matches one")
    usable = [key for key in matched if dns.dnssec.default_policy.ok_to_validate(key)]
    if not usable:
        return DnssecVerdict(state=DnssecState.UNSIGNED, detail="signed with algorithms validators may not use")
    try:
        dns.dnssec.validate(keys, keys_sig, {name: _key_set(name, usable)})
    except dns.exception.ValidationFailure as exc:
        return _bogus(f"the DNSKEY signature does not verify ({exc})")
    soa, soa_sig = _rrset(await ask(resolver, zone, "SOA"), name, dns.rdatatype.SOA)
    if soa is None or soa_sig is None:
        return _bogus("the zone's SOA is not signed")
    try:
        dns.dnssec.validate(soa, soa_sig, {name: keys})
    except dns.exception.ValidationFailure as exc:
        return _bogus(f"the SOA signature does not verify ({exc})")
    return DnssecVerdict(state=DnssecState.SIGNED, detail=f"{count}, DNSKEY and SOA signatures valid")


def _bogus(detail: str) -> DnssecVerdict:
    return DnssecVerdict(state=DnssecState.BOGUS, detail=detail)


def _rrset(reply: Reply, name: dns.name.Name, rdtype: int) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]:
    """The ``rdtype`` set at ``name`` in a reply and the RRSIG set covering it (either may be None)."""
    response = reply.response
    if response is None:
        return None, None
    found = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
    sig = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
    return found, sig


def _matched_keys(name: dns.name.Name, ds_records: tuple[Any, ...], keys: dns.rrset.RRset) -> list[Any]:
    """The DNSKEYs a DS record vouches for (same digest, RFC 4034 section 5.1.4)."""
    matched = []
    for key in keys:
        for ds in ds_records:
            try:
                digest = dns.dnssec.make_ds(name, key, DSDigest(ds.digest_type), validating=True)
            except (ValueError, dns.exception.UnsupportedAlgorithm, dns.exception.DeniedByPolicy):
                continue  # a digest type we cannot compute: not a match, not an error
            if digest == ds:
                matched.append(key)
                break
    return matched


def _key_set(name: dns.name.Name, keys: list[Any]) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for key in keys:
        rrset.add(key)
    return rrset
