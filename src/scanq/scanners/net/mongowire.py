"""Just enough of MongoDB's wire protocol to ask a server who it is and whether it wants credentials.

Two OP_MSG commands (MongoDB 3.6 and later), sent together: ``buildInfo``
(answered without authentication: the version) and ``listDatabases`` with
``nameOnly`` (answered only to an authenticated client when access control is
on). A minimal BSON writer and reader cover the few types involved.
"""

from __future__ import annotations

import struct
from typing import Any

from scanq.scanners.net.servicewire import AUTH, OPEN, Identity

OP_MSG = 2013
_UNAUTHORIZED_CODES = frozenset({13, 18})  # Unauthorized, AuthenticationFailed


def command(request_id: int, document: dict[str, Any]) -> bytes:
    """An OP_MSG with one body section."""
    body = struct.pack("<I", 0) + b"\x00" + bson(document)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_MSG) + body


def probe() -> bytes:
    """``buildInfo`` (request 1) then ``listDatabases`` (request 2)."""
    return command(1, {"buildInfo": 1, "$db": "admin"}) + command(
        2, {"listDatabases": 1, "nameOnly": True, "$db": "admin"}
    )


def bson(document: dict[str, Any]) -> bytes:
    """Encode a flat document of ints, floats, bools and strings."""
    out = bytearray()
    for key, value in document.items():
        name = key.encode() + b"\x00"
        if isinstance(value, bool):
            out += b"\x08" + name + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            out += b"\x10" + name + struct.pack("<i", value)
        elif isinstance(value, float):
            out += b"\x01" + name + struct.pack("<d", value)
        else:
            raw = str(value).encode() + b"\x00"
            out += b"\x02" + name + struct.pack("<i", len(raw)) + raw
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\x00"


def read_document(data: bytes) -> dict[str, Any]:
    """Decode the top level of a BSON document: strings, numbers and booleans; other values as None."""
    (length,) = struct.unpack("<i", data[:4])
    if length < 5 or length > len(data):
        raise ValueError("truncated BSON document")
    out: dict[str, Any] = {}
    i = 4
    while i < length - 1:
        kind = data[i]
        end = data.index(b"\x00", i + 1)
        key = data[i + 1 : end].decode("utf-8", "replace")
        i = end + 1
        if kind == 0x01:
            out[key] = struct.unpack("<d", data[i : i + 8])[0]
            i += 8
        elif kind == 0x02:
            (size,) = struct.unpack("<i", data[i : i + 4])
            out[key] = data[i + 4 : i + 3 + size].decode("utf-8", "replace")
            i += 4 + size
        elif kind in (0x03, 0x04):  # document, array: skipped
            (size,) = struct.unpack("<i", data[i : i + 4])
            out[key] = None
            i += size
        elif kind == 0x08:
            out[key] = data[i] == 1
            i += 1
        elif kind == 0x10:
            out[key] = struct.unpack("<i", data[i : i + 4])[0]
            i += 4
        elif kind in (0x09, 0x11, 0x12):  # datetime, timestamp, int64
            out[key] = struct.unpack("<q", data[i : i + 8])[0]
            i += 8
        elif kind in (0x0A, 0x06):  # null, undefined
            out[key] = None
        elif kind == 0x07:  # ObjectId
            out[key] = None
            i += 12
        else:
            break  # a type this reader does not need: stop, keep what was read
    return out


def replies(data: bytes) -> dict[int, dict[str, Any]]:
    """The OP_MSG replies in ``data``, by the request id they answer."""
    out: dict[int, dict[str, Any]] = {}
    offset = 0
    while offset + 16 <= len(data):
        length, _, response_to, opcode = struct.unpack("<iiii", data[offset : offset + 16])
        if length < 16 or offset + length > len(data):
            break
        if opcode == OP_MSG and length > 21 and data[offset + 20] == 0:
            try:
                out[response_to] = read_document(data[offset + 21 : offset + length])
            except (ValueError, struct.error):
                pass
        offset += length
    return out


def is_complete(data: bytes) -> bool:
    """Both replies arrived."""
    return len(replies(data)) >= 2


def is_complete_or_foreign(data: bytes) -> bool:
    """Both replies arrived, or the first 16 bytes are no MongoDB message header (no need to wait)."""
    if len(data) >= 16:
        length, _, _, opcode = struct.unpack("<iiii", data[:16])
        if opcode not in (OP_MSG, 1) or not 16 <= length <= 48 * 1024 * 1024:
            return True
    return is_complete(data)


def read_mongodb(data: bytes) -> Identity | None:
    """The service from the two replies: MongoDB when buildInfo answered; access from listDatabases."""
    answers = replies(data)
    info = answers.get(1)
    if info is None:
        return None
    version = info.get("version")
    listing = answers.get(2, {})
    if listing.get("ok") == 1:
        access: str | None = OPEN
    elif listing.get("code") in _UNAUTHORIZED_CODES:
        access = AUTH
    else:
        access = None
    return Identity(
        service="mongodb", product="MongoDB", version=str(version) if isinstance(version, str) else None, access=access
    )
