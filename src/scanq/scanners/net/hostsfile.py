"""Names the operator wrote in a hosts file, resolved the way the system resolver would.

The scanners resolve names as absolute names (``getaddrinfo("name.")``, or
dnspython against ``--scanner-nameservers``) so that no resolv.conf search
domain is ever tried. glibc's hosts-file lookup does not match an absolute
name, so a host known only through ``/etc/hosts`` never resolved. The scanners
therefore read the hosts file themselves (``--scanner-hosts-file``) before
asking any resolver, at submit time and at run time alike
(``targets.resolve_target``): a name listed there resolves to the addresses
listed there, and the address rules judge those like any others.

The format is hosts(5): an address, then names, ``#`` to the end of a line is
a comment; names match without regard to case or a trailing dot, and every
line naming a host adds its address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping

from scanq.scanners.net.addresses import IPAddress

logger = logging.getLogger(__name__)

# Reads stop here: a hosts file is a few lines, not a way to make every lookup slow.
MAX_HOSTS_FILE_BYTES = 1 << 20

_Signature = tuple[int, int, int]


def parse_hosts(text: str) -> dict[str, tuple[IPAddress, ...]]:
    """Addresses by lowercase name (no trailing dot) from hosts-file ``text``; malformed lines are skipped."""
    found: dict[str, list[IPAddress]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            # A zone (fe80::1%eth0) names an interface of this machine, not part of the address.
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        for name in fields[1:]:
            addresses = found.setdefault(canonical_name(name), [])
            if address not in addresses:
                addresses.append(address)
    return {name: tuple(addresses) for name, addresses in found.items()}


def canonical_name(name: str) -> str:
    """How names are compared: lowercase, without a trailing dot."""
    return name.lower().removesuffix(".")


class HostsFile:
    """A hosts file, read again whenever it changes on disk.

    Args:
        path: the file (``/etc/hosts``); a file that is missing or unreadable lists no name.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._signature: _Signature | None = None
        self._entries: Mapping[str, tuple[IPAddress, ...]] = {}

    def lookup(self, host: str) -> tuple[IPAddress, ...]:
        """The addresses the file gives ``host``, in file order; empty when it does not list it."""
        return self._current().get(canonical_name(host), ())

    def _current(self) -> Mapping[str, tuple[IPAddress, ...]]:
        try:
            stat = os.stat(self.path)
        except OSError:
            self._signature, self._entries = None, {}
            return self._entries
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature != self._signature:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as file:
                    text = file.read(MAX_HOSTS_FILE_BYTES)
            except OSError as exc:
                logger.warning("cannot read the hosts file %s: %s", self.path, exc)
                text = ""
            self._signature, self._entries = signature, parse_hosts(text)
        return self._entries


__all__ = ["MAX_HOSTS_FILE_BYTES", "HostsFile", "canonical_name", "parse_hosts"]
