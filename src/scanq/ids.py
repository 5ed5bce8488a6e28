"""Scan ids: UUIDv7 (RFC 9562), time-ordered, canonical lowercase strings."""

from __future__ import annotations

import re

import uuid_utils

_SCAN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_scan_id() -> str:
    """A new UUIDv7 string; ids made later sort after earlier ones."""
    return str(uuid_utils.uuid7())


def is_scan_id(value: str) -> bool:
    """True for a canonical lowercase UUID string (the only form scanq stores)."""
    return _SCAN_ID.fullmatch(value) is not None
