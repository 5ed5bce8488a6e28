"""The settings the network scanners share (``SCANQ_SCANNER_*``, ``--scanner-*`` and ``--target-allowlist``)."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass

from scanq.exceptions import ConfigError
from scanq.scanners.net.dnsresolver import parse_nameserver
from scanq.scanners.settings import setting, setting_error

NAMESPACE = "scanner"
# The system's hosts file: its absence is no error (a container may have none); another path must exist.
SYSTEM_HOSTS_FILE = "/etc/hosts"


@dataclass(frozen=True, kw_only=True)
class NetSettings:
    """One section for tls, ports, http, dns and surface: they share the target rules, timeouts and limits."""

    target_allowlist: tuple[str, ...] = setting(
        (), "CIDRs real scanners may target although private (comma list)", key="target_allowlist"
    )
    connect_timeout_seconds: float = setting(3.0, "Real scanners: TCP connect / TLS handshake timeout")
    plugin_timeout_seconds: float = setting(120.0, "Real scanners: time one plugin may take on a target")
    sockets_per_target: int = setting(16, "Real scanners: connections open at once to one target")
    nameservers: tuple[str, ...] = setting((), "Real scanners: DNS servers, ip[:port] list (empty: system)")
    ca_file: str = setting("", "Real scanners: extra CA bundle (PEM) trusted besides the system store")
    hosts_file: str = setting(
        SYSTEM_HOSTS_FILE, "Real scanners: hosts file whose names resolve as written there (empty: none)"
    )

    def __post_init__(self) -> None:
        if self.sockets_per_target < 1:
            raise setting_error("sockets_per_target", "must be at least 1", self.sockets_per_target)
        for name in ("connect_timeout_seconds", "plugin_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise setting_error(name, "must be greater than 0", getattr(self, name))
        for cidr in self.target_allowlist:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise setting_error("target_allowlist", f"{cidr!r} is not a CIDR", self.target_allowlist) from None
        for server in self.nameservers:
            try:
                parse_nameserver(server)
            except ConfigError as exc:
                raise setting_error("nameservers", exc.message, self.nameservers) from None
        if self.ca_file:
            try:
                # A context of its own: loading the system store too would only cost time here.
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise setting_error("ca_file", f"cannot be read as a PEM CA bundle: {exc}", self.ca_file) from None
        if self.hosts_file and self.hosts_file != SYSTEM_HOSTS_FILE and not _is_readable_file(self.hosts_file):
            raise setting_error("hosts_file", "is not a readable file", self.hosts_file)


def _is_readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)
