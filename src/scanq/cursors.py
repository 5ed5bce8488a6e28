"""List cursors: the opaque ``next_cursor`` a client gets, which carries the status filter it continues.

The scan service wraps the store's own cursor in it, so a client that follows
``next_cursor`` without repeating ``status=`` keeps the filter, and one that
sends another status with it is told so (``ScanService.list_scans``).
"""

from __future__ import annotations

import base64
import binascii

from scanq.exceptions import ValidationError
from scanq.models import ScanStatus

# A page cursor is base64url (unpadded) of "<status or *>:<the store's cursor>", so it cannot lose its filter.
PAGE_CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
MAX_PAGE_CURSOR_LENGTH = 256
_ANY_STATUS = "*"


def encode_page_cursor(store_cursor: str, *, status: ScanStatus | None) -> str:
    """The ``next_cursor`` clients see: the store's cursor with the status filter it continues."""
    payload = f"{_ANY_STATUS if status is None else status.value}:{store_cursor}"
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_cursor(cursor: str) -> tuple[ScanStatus | None, str]:
    """The status filter and the store's cursor in ``cursor``; raise ``ValidationError`` if scanq did not make it."""
    if not 0 < len(cursor) <= MAX_PAGE_CURSOR_LENGTH or not cursor.isascii():
        raise ValidationError("invalid cursor")
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("invalid cursor") from None
    name, sep, store_cursor = payload.partition(":")
    if not sep or not store_cursor:
        raise ValidationError("invalid cursor")
    if name == _ANY_STATUS:
        return None, store_cursor
    try:
        return ScanStatus(name), store_cursor
    except ValueError:
        raise ValidationError("invalid cursor") from None


def filter_name(status: ScanStatus | None) -> str:
    """How a message names the filter a cursor continues: ``every status`` or ``status=Error``."""
    return "every status" if status is None else f"status={status.value}"


__all__ = ["MAX_PAGE_CURSOR_LENGTH", "PAGE_CURSOR_PATTERN", "decode_page_cursor", "encode_page_cursor", "filter_name"]
