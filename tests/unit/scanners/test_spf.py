"""SPF terms as a receiver parses them (RFC 7208): what is a permerror before any DNS question."""

from __future__ import annotations

import pytest

from scanq.scanners.net.spf import SpfSyntaxError, SpfWalk, is_spf, parse_terms


def test_terms_keep_mechanism_value_and_modifiers():
    terms = parse_terms("v=spf1 +a:mail.example.com/24 -ip6:2001:db8::/32 include:_spf.example.com redirect=x.test")
    assert [(t.name, t.value, t.is_modifier) for t in terms] == [
        ("a", "mail.example.com", False),
        ("ip6", "2001:db8::", False),
        ("include", "_spf.example.com", False),
        ("redirect", "x.test", True),
    ]


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("v=spf1 foo:bar -all", "unknown mechanism"),
        ("v=spf1 include: -all", "include needs a value"),
        ("v=spf1 ip4:300.1.2.3 -all", "ip4 network is malformed"),
        ("v=spf1 ip4:2001:db8::1 -all", "ip4 network is of the wrong family"),
        ("v=spf1 -all:x", "all takes no value"),
        ("v=spf1 redirect=a.test redirect=b.test", "redirect= is given more than once"),
        ("v=spf1 exp=a.test exp=b.test -all", "exp= is given more than once"),
    ],
)
def test_malformed_terms_are_a_permerror(record, why):
    with pytest.raises(SpfSyntaxError, match=why):
        parse_terms(record)


def test_unknown_modifiers_are_ignored_as_rfc_7208_says():
    assert [t.name for t in parse_terms("v=spf1 moo=cow -all")] == ["moo", "all"]


def test_what_counts_as_an_spf_record():
    assert is_spf("v=spf1") and is_spf("V=SPF1 -all")
    assert not is_spf("v=spf10 -all") and not is_spf(" v=spf1 -all")


def test_void_lookups_over_two_are_a_permerror_of_their_own():
    walk = SpfWalk(void_lookups=3, errors=["include:x.test: x.test has no SPF record"])
    assert walk.permerrors == ["include:x.test: x.test has no SPF record", "3 void lookups (at most 2)"]
    assert SpfWalk(void_lookups=2).permerrors == []
