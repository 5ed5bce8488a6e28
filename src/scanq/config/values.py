"""One setting's text and its value: parse a variable or flag, format a value back, check a host name.

The rules are the same wherever a value comes from (``SCANQ_*``, an original
name, a flag), so an error reads the same and names where the text came from.
"""

from __future__ import annotations

import ipaddress
import re
import types
from typing import Any, Union, get_args, get_origin

from scanq.exceptions import ConfigError


def parse_value(name: str, annotation: Any, raw: str, *, source: str) -> Any:
    """Cast one environment string to the setting's type; raise ``ConfigError`` naming ``source``."""
    base = _unwrap_optional(annotation)
    try:
        if base is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        if get_origin(base) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        expected = getattr(base, "__name__", base)
        raise ConfigError(f"{source}: invalid value {raw!r} for {name} (expected {expected})") from None


def format_value(value: Any) -> str:
    """A setting's value as the string ``parse_value`` reads back (lists comma-separated)."""
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_host(value: str) -> bool:
    """True for an IP address or a syntactically valid host name (RFC 1123: the last label is not all digits).

    ``999.1.1.1`` is neither, and refusing it here spares a DNS query that can only fail.
    """
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    return 0 < len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


__all__ = ["format_value", "is_host", "parse_value"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
