"""Small parsers of the plugins: SPF, DMARC, cookies, HTTP heads, banners, name servers."""

from __future__ import annotations

import pytest

from scanq.exceptions import ConfigError
from scanq.scanners.net.cookies import parse_set_cookie
from scanq.scanners.net.dnscheck import dmarc_tags, spf_all_qualifier
from scanq.scanners.net.dnsresolver import parse_nameserver
from scanq.scanners.net.httpwire import HttpError, parse_head
from scanq.scanners.net.ports import clean_banner


@pytest.mark.parametrize(
    ("record", "qualifier"),
    [
        ("v=spf1 -all", "-"),
        ("v=spf1 mx ~all", "~"),
        ("v=spf1 ?all", "?"),
        ("v=spf1 all", "+"),
        ("v=spf1 +ALL", "+"),
        ("v=spf1 mx", None),
        ("v=spf1 include:allowed.example -all", "-"),
    ],
)
def test_spf_all_qualifier(record, qualifier):
    assert spf_all_qualifier(record) == qualifier


def test_dmarc_tags():
    assert dmarc_tags("v=DMARC1; P=Quarantine ; rua=mailto:x@example.com") == {
        "v": "dmarc1",
        "p": "quarantine",
        "rua": "mailto:x@example.com",
    }


def test_cookie_attributes_drop_the_value():
    cookie = parse_set_cookie("sid=abc=def; Path=/; Secure; HttpOnly; SameSite=Lax")
    assert cookie is not None
    assert (cookie.name, cookie.secure, cookie.httponly, cookie.samesite) == ("sid", True, True, "lax")
    assert "abc" not in repr(cookie)


def test_parse_head():
    head = parse_head(
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://x/\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n"
    )
    assert (head.status, head.reason) == (301, "Moved Permanently")
    assert head.header("LOCATION") == "https://x/"
    assert head.header_list("set-cookie") == ["a=1", "b=2"]
    with pytest.raises(HttpError):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_clean_banner():
    assert clean_banner(b"220 mail ESMTP Postfix\r\nmore\r\n") == "220 mail ESMTP Postfix"
    assert clean_banner(b"\x00\x01\r\n") is None
    assert clean_banner(b"") is None


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_nameserver(spec, parsed):
    assert parse_nameserver(spec) == parsed


@pytest.mark.parametrize("spec", ["dns.google", "127.0.0.1:0", "127.0.0.1:x", "[::1]:99999"])
def test_bad_nameserver(spec):
    with pytest.raises(ConfigError):
        parse_nameserver(spec)
