"""Parsing and normalising targets (no I/O)."""

from __future__ import annotations

import ipaddress

import pytest

from scanq.exceptions import TargetRefused, ValidationError
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.targets import normalise_hostname, parse_target

POLICY = AddressPolicy()


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  www.example.com  ", "www.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c0.example", "a-b.c0.example"),
    ],
)
def test_hostnames_are_normalised(raw, host):
    target = parse_target(raw, policy=POLICY)
    assert target.host == host
    assert target.ip is None
    assert str(target) == host


def test_ip_literals():
    assert parse_target("93.184.215.14", policy=POLICY).ip == ipaddress.ip_address("93.184.215.14")
    v6 = parse_target("[2606:4700:4700::1111]", policy=POLICY)
    assert v6.host == "2606:4700:4700::1111"
    assert parse_target("2606:4700:4700:0::1111", policy=POLICY).host == "2606:4700:4700::1111"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "needs a target"),
        ("", "needs a target"),
        ("exa mple.com", "whitespace"),
        ("example.com\\x", "backslash"),
        ("example.com:443", "not a hostname"),
        ("example.com/path", "not a hostname"),
        ("user@example.com", "not a hostname"),
        ("-bad.example.com", "invalid label"),
        ("bad-.example.com", "invalid label"),
        ("under_score.example.com", "invalid label"),
        ("a..example.com", "invalid label"),
        ("x" * 64 + ".example.com", "invalid label"),
        (("a" * 60 + ".") * 5 + "com", "longer than 253"),
        ("127.1", "non-canonical IP"),
        ("0x7f.1", "non-canonical IP"),
        ("2130706433", "non-canonical IP"),
        ("fe80::1%eth0", "zone ids"),
        ("http://example.com/", "not a URL"),
    ],
)
def test_malformed_targets_are_refused(raw, message):
    with pytest.raises(ValidationError, match=message):
        parse_target(raw, policy=POLICY)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("intranet", "single-label"),
        ("printer.local", ".local"),
        ("db.corp.internal", ".internal"),
        ("router.home.arpa", ".arpa"),
        ("1.0.0.127.in-addr.arpa", ".arpa"),
        ("x.onion", ".onion"),
        ("localhost", "loopback"),
        ("app.localhost", "loopback"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "metadata"),
    ],
)
def test_internal_targets_are_refused_at_submit_time(raw, message):
    with pytest.raises(TargetRefused, match=message):
        parse_target(raw, policy=POLICY)


def test_allow_list_lets_localhost_through_only_when_both_loopbacks_are_open():
    with pytest.raises(TargetRefused):
        parse_target("localhost", policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]))
    assert parse_target("localhost", policy=AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])).host == "localhost"


def test_urls_only_where_allowed_and_normalised():
    target = parse_target("HTTPS://Bücher.Example.:8443/a/b?x=1#frag", policy=POLICY, allow_url=True)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "xn--bcher-kva.example",
        8443,
        "/a/b?x=1",
    )
    assert str(target) == "https://xn--bcher-kva.example:8443/a/b?x=1"
    assert str(parse_target("http://example.com:80", policy=POLICY, allow_url=True)) == "http://example.com/"
    v6 = parse_target("http://[2606:4700::1]:8080/", policy=POLICY, allow_url=True)
    assert str(v6) == "http://[2606:4700::1]:8080/"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ftp://example.com/", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://:80/", "no host"),
        ("http://example.com:99999/", "malformed"),
        ("http://example.com:0/", "1-65535"),
        ("http://10.0.0.1/", "private"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
    ],
)
def test_bad_urls_are_refused(raw, message):
    with pytest.raises(ValidationError, match=message):
        parse_target(raw, policy=POLICY, allow_url=True)


def test_normalise_hostname_rejects_invalid_idna():
    with pytest.raises(ValidationError):
        normalise_hostname("\u0300a.example")
