"""The rules a ``Settings`` keeps, checked when one is made: each refusal names the setting's variable.

Ranges (ports, counts at least 1, positive durations), the relations between
settings (a heartbeat shorter than the lease, HTTPS with both files), and the
shapes of text values (hosts, origins, CIDRs, the retention policy, the store URL).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import TYPE_CHECKING, Any

from scanq.config.sections import ENV_PREFIX
from scanq.config.values import is_host, is_loopback
from scanq.exceptions import ConfigError
from scanq.retention import RetentionPolicy

if TYPE_CHECKING:
    from scanq.config import Settings

# --auth: tokens required unless every service listens on loopback; always; never.
AUTH_MODES = ("auto", "tokens", "off")


def check_settings(s: Settings) -> None:
    """Raise ``ConfigError`` naming the first setting whose value ``s`` cannot run with."""

    def fail(name: str, why: str) -> None:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {why} (got {getattr(s, name)!r})", setting=name)

    for name in ("ingest_port", "status_port"):
        if not 0 <= getattr(s, name) <= 65535:
            fail(name, "must be a port number 0-65535")
    if not 0 <= s.metrics_port <= 65535:
        fail("metrics_port", "must be a port number 0-65535 (0: off)")
    if s.max_per_target < 0:
        fail("max_per_target", "must not be negative (0: no cap)")
    for name in (
        "workers",
        "ingest_processes",
        "status_processes",
        "concurrency",
        "max_attempts",
        "max_batch",
        "max_body_bytes",
        "max_connections",
        "webhook_concurrency",
    ):
        if getattr(s, name) < 1:
            fail(name, "must be at least 1")
    # Durations that must be positive (one name per word).
    positive = """lease_seconds heartbeat_seconds reaper_seconds poll_seconds retry_base_seconds retry_max_seconds
        scan_timeout_seconds header_timeout_seconds body_timeout_seconds event_retention_seconds
        delivery_retention_seconds webhook_connect_timeout_seconds webhook_timeout_seconds
        webhook_backoff_base_seconds webhook_max_age_seconds"""
    for name in positive.split():
        if not getattr(s, name) > 0:
            fail(name, "must be greater than 0")
    for cidr in s.webhook_allowlist:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            fail("webhook_allowlist", f"{cidr!r} is not a CIDR such as 10.0.0.0/8 or 127.0.0.1/32")
    if s.shutdown_seconds < 0:
        fail("shutdown_seconds", "must not be negative")
    if s.heartbeat_seconds >= s.lease_seconds:
        fail("heartbeat_seconds", f"must be shorter than lease_seconds ({s.lease_seconds})")
    if s.log_format not in ("text", "json"):
        fail("log_format", "must be text or json")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        fail("log_level", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    try:
        RetentionPolicy.parse(s.retention)
    except ValueError as exc:
        fail("retention", str(exc))
    if not is_host(s.host):
        fail("host", "must be an IP address or a host name")
    for name in s.allowed_hosts:
        if name != "*" and not is_host(name.strip("[]")):
            fail("allowed_hosts", f"{name!r} is not a host name or address (or *)")
    for origin in s.allowed_origins:
        if not re.fullmatch(r"https?://[^/?#\s]+", origin.rstrip("/")):
            fail("allowed_origins", f"{origin!r} is not an origin such as https://console.example:8443")
    if s.auth not in AUTH_MODES:
        fail("auth", f"must be {', '.join(AUTH_MODES[:-1])} or {AUTH_MODES[-1]}")
    if s.auth == "off" and not is_loopback(s.host) and not s.insecure_no_auth:
        fail(
            "auth",
            f"off on {s.host}, not loopback, would let anyone who can reach it read and cancel every scan; "
            "use API tokens, or add --insecure-no-auth (SCANQ_INSECURE_NO_AUTH=1) if that is really meant",
        )
    if s.webhook_ca_file and not os.path.isfile(s.webhook_ca_file):
        fail("webhook_ca_file", "not a file")
    if bool(s.tls_cert) != bool(s.tls_key):
        fail("tls_cert" if not s.tls_cert else "tls_key", "HTTPS needs both --tls-cert and --tls-key")
    if "://" not in s.database_url:
        fail("database_url", f"must be a URL such as {_default(s, 'database_url')}")


def _default(s: Settings, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(s) if f.name == name)


__all__ = ["AUTH_MODES", "check_settings"]
