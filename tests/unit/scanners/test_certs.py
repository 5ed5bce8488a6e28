"""Certificate facts and host matching (RFC 6125)."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from scanq.scanners.net.certs import CertFacts, days_left, matches_host, read_certificate


def facts(*names: str, ips: tuple[str, ...] = ()) -> CertFacts:
    now = dt.datetime.now(dt.UTC)
    return CertFacts(
        subject="CN=x",
        issuer="CN=y",
        not_before=now,
        not_after=now + dt.timedelta(days=10),
        dns_names=names,
        ip_addresses=tuple(ipaddress.ip_address(i) for i in ips),
        key_type="RSA",
        key_bits=2048,
        signature_hash="sha256",
        is_self_issued=False,
    )


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("example.com", "example.com", True),
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("w*.example.com", "www.example.com", False),
        ("www.*.com", "www.example.com", False),
        ("EXAMPLE.com.", "example.com", True),
    ],
)
def test_dns_name_matching(pattern, host, matches):
    assert matches_host(facts(pattern.lower()), host=host, ip=None) is matches


def test_ip_targets_match_ip_sans_only():
    cert = facts("127.0.0.1", ips=("127.0.0.1",))
    assert matches_host(cert, host="127.0.0.1", ip=ipaddress.ip_address("127.0.0.1"))
    assert not matches_host(facts("127.0.0.1"), host="127.0.0.1", ip=ipaddress.ip_address("127.0.0.1"))


def test_read_certificate_from_der():
    ca = trustme.CA()
    leaf = ca.issue_cert("www.example.com", "10.0.0.1", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(serialization.Encoding.DER)
    got = read_certificate(der)
    assert got.dns_names == ("www.example.com",)
    assert got.ip_addresses == (ipaddress.ip_address("10.0.0.1"),)
    assert got.key_type == "EC" and not got.is_weak_key
    assert got.signature_hash == "sha256" and not got.is_weak_signature
    assert 4 < days_left(got) <= 5


def test_unreadable_certificate_raises_value_error():
    with pytest.raises(ValueError):
        read_certificate(b"not a certificate")
