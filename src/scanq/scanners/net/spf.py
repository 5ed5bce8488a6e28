"""Walk an SPF record as a receiver would, to find what makes it a permanent error (RFC 7208).

A static walk evaluates every term (a receiver stops at the first match, but cannot be relied
on to stop early), following ``include:`` and ``redirect=``:

- lookups: each ``include``, ``a``, ``mx``, ``ptr``, ``exists`` and ``redirect`` counts, through
  every include, a repeated include again (section 4.6.4); more than 10 is a permerror;
- void lookups: an ``a`` name with no A and no AAAA record, an ``mx`` name without MX records,
  an ``include``/``redirect`` name that does not exist or has no TXT record; more than 2 is a
  permerror (section 4.6.4);
- an ``include`` whose name has no SPF record (or several) is a permerror (section 5.2), and so
  is a ``redirect`` to one (section 6.1) and an include or redirect loop;
- an unknown mechanism, a malformed ``ip4``/``ip6`` network, a missing domain after ``include:``
  or ``exists:``, ``redirect``/``exp`` given twice: permerror (sections 4.6 and 6).

It is bounded whatever the record says: depth 10, ``SPF_MAX_QUERIES`` DNS queries, and it stops
querying once a limit is exceeded. Names built with macros (``%{…}``) are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver

from scanq.scanners.net.dnsquery import ask, txt

SPF_MAX_LOOKUPS = 10  # RFC 7208 section 4.6.4
SPF_MAX_VOID_LOOKUPS = 2  # RFC 7208 section 4.6.4
SPF_MAX_DEPTH = 10
SPF_MAX_QUERIES = 40  # our own bound on the DNS queries of one walk
LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MODIFIER = re.compile(r"([a-z][a-z0-9_.-]*)=(.*)", re.IGNORECASE | re.DOTALL)


def is_spf(text: str) -> bool:
    """Whether a TXT record is an SPF record (version section exactly ``v=spf1``)."""
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


@dataclass(frozen=True, kw_only=True, slots=True)
class Term:
    """One term: a mechanism (``qualifier``, ``name``, ``value``) or a modifier (``name=value``)."""

    name: str
    value: str
    is_modifier: bool
    text: str


class SpfSyntaxError(ValueError):
    """A term a receiver cannot parse (permerror)."""


def parse_terms(record: str) -> list[Term]:
    """The terms after ``v=spf1``; raise ``SpfSyntaxError``."""
    terms = []
    for text in record.split()[1:]:
        modifier = _MODIFIER.fullmatch(text)
        if modifier is not None:
            terms.append(Term(name=modifier.group(1).lower(), value=modifier.group(2), is_modifier=True, text=text))
            continue
        body = text[1:] if text[0] in "+-~?" else text
        name, sep, value = body.partition(":")
        name, slash, _ = name.partition("/")
        name = name.lower()
        if name not in MECHANISMS:
            raise SpfSyntaxError(f"unknown mechanism {text!r}")
        if name in ("include", "exists", "ip4", "ip6") and not value:
            raise SpfSyntaxError(f"{name} needs a value: {text!r}")
        if name == "all" and (sep or slash):
            raise SpfSyntaxError(f"all takes no value: {text!r}")
        if name in ("ip4", "ip6"):
            _check_network(name, value, text)
        terms.append(Term(name=name, value=value.split("/", 1)[0], is_modifier=False, text=text))
    for once in ("redirect", "exp"):
        if sum(1 for t in terms if t.is_modifier and t.name == once) > 1:
            raise SpfSyntaxError(f"{once}= is given more than once")
    return terms


def _check_network(name: str, value: str, text: str) -> None:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise SpfSyntaxError(f"{name} network is malformed: {text!r}") from None
    if network.version != (4 if name == "ip4" else 6):
        raise SpfSyntaxError(f"{name} network is of the wrong family: {text!r}")


@dataclass(kw_only=True, slots=True)
class SpfWalk:
    """What the walk found: counts, permanent errors, and what it did not follow (notes)."""

    lookups: int = 0
    void_lookups: int = 0
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counted: dict[str, tuple[int, int]] = field(default_factory=dict)  # a followed name: its lookups, voids

    @property
    def over_limits(self) -> bool:
        return self.lookups > SPF_MAX_LOOKUPS or self.void_lookups > SPF_MAX_VOID_LOOKUPS

    @property
    def permerrors(self) -> list[str]:
        """Every permanent error but the lookup limit (its own check)."""
        voids = []
        if self.void_lookups > SPF_MAX_VOID_LOOKUPS:
            voids = [f"{self.void_lookups} void lookups (at most {SPF_MAX_VOID_LOOKUPS})"]
        return self.errors + voids


async def walk_spf(resolver: dns.asyncresolver.Resolver, domain: str, record: str) -> SpfWalk:
    """Walk ``record`` (the SPF record of ``domain``) and what it includes or redirects to."""
    walk = SpfWalk()
    await _walk(resolver, domain, record, walk, path=(domain,))
    return walk


async def _walk(
    resolver: dns.asyncresolver.Resolver, domain: str, record: str, walk: SpfWalk, *, path: tuple[str, ...]
) -> None:
    try:
        terms = parse_terms(record)
    except SpfSyntaxError as exc:
        walk.errors.append(f"{domain}: {exc}")
        return
    has_all = any(t.name == "all" and not t.is_modifier for t in terms)
    voids: list[Coroutine[Any, Any, bool]] = []
    for term in terms:
        if term.name not in LOOKUP_TERMS or (term.name == "redirect" and (not term.is_modifier or has_all)):
            continue  # RFC 7208 section 6.1: redirect is ignored beside an all mechanism
        walk.lookups += 1
        target = (term.value or domain).lower().rstrip(".")
        if term.name in ("ptr", "exists") or walk.over_limits:
            continue  # ptr and exists depend on the sender, not on the record alone
        if "%" in target:
            walk.notes.append(f"{term.text}: not followed (macro)")
        elif term.name in ("a", "mx") and _spend(walk, 2 if term.name == "a" else 1):
            voids.append(_is_void(resolver, term.name, target))
        elif term.name in ("include", "redirect"):
            await _follow(resolver, term, target, walk, path=path)
    # The a/mx questions of one record go out together; all finish before a failure is raised.
    answers = await asyncio.gather(*voids, return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    walk.void_lookups += sum(1 for answer in answers if answer is True)


def _spend(walk: SpfWalk, queries: int) -> bool:
    """Take ``queries`` from the walk's budget; False (and a note) when it is spent."""
    if walk.queries + queries > SPF_MAX_QUERIES:
        if not any(note.startswith("query budget") for note in walk.notes):
            walk.notes.append(f"query budget of {SPF_MAX_QUERIES} spent: the rest was counted, not resolved")
        return False
    walk.queries += queries
    return True


async def _is_void(resolver: dns.asyncresolver.Resolver, mechanism: str, name: str) -> bool:
    if mechanism == "mx":
        return (await ask(resolver, name, "MX")).is_void
    return (await ask(resolver, name, "A")).is_void and (await ask(resolver, name, "AAAA")).is_void


async def _follow(
    resolver: dns.asyncresolver.Resolver, term: Term, target: str, walk: SpfWalk, *, path: tuple[str, ...]
) -> None:
    """An include or redirect: its record is walked too (a repeat is counted again, not asked again)."""
    if target in path:
        walk.errors.append(f"{term.name} loop: {' -> '.join((*path, target))}")
        return
    if target in walk.counted:
        lookups, voids = walk.counted[target]
        walk.lookups, walk.void_lookups = walk.lookups + lookups, walk.void_lookups + voids
        return
    if len(path) > SPF_MAX_DEPTH or not _spend(walk, 1):
        walk.notes.append(f"{term.text}: not followed (depth or query budget)")
        return
    reply = await txt(resolver, target)
    records = [t for t in reply.records if is_spf(t)]
    if len(records) != 1:
        walk.void_lookups += reply.is_void
        rule = "section 5.2" if term.name == "include" else "section 6.1"
        what = (
            "does not exist"
            if reply.nxdomain
            else (f"has {len(records)} SPF records" if records else "has no SPF record")
        )
        walk.errors.append(f"{term.text}: {target} {what} (permerror, RFC 7208 {rule})")
        return
    before = (walk.lookups, walk.void_lookups)
    await _walk(resolver, target, records[0], walk, path=(*path, target))
    walk.counted[target] = (walk.lookups - before[0], walk.void_lookups - before[1])
