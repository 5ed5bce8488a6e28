"""A scan's JSON for ``POST /scans``'s answer, built positionally: the bytes of ``encoder.encode(scan_out(scan))``.

``views.ScanOut`` is keyword-only, and building one from a ``Scan`` parses 24
keyword arguments: about 1.5 µs of the hot path's CPU, more than encoding it.
``AnswerOut`` has the same fields in the same order (msgspec encodes a struct's
fields in their declared order, by name, whatever their annotations), so it
encodes to the same bytes; ``tests/unit/test_ingest_answer.py`` compares them on
new scans and on replays of scans that ran, and checks that the field lists
are equal, so a field added to ``ScanOut`` fails there until it is added here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from scanq.api.http import encoder
from scanq.models import Scan
from scanq.views import scan_out


class AnswerOut(msgspec.Struct):
    """``views.ScanOut``'s fields, positional (the types are ``ScanOut``'s; only the encoding matters here)."""

    scan_id: Any
    status: Any
    target: Any
    scanner: Any
    options: Any
    priority: Any
    attempt: Any
    max_attempts: Any
    created_at: Any
    updated_at: Any
    available_at: Any
    started_at: Any
    finished_at: Any
    lease_owner: Any
    lease_expires_at: Any
    error: Any
    result: Any
    idempotency_key: Any
    cancel_requested: Any
    history: Any
    tenant: Any
    submitted_by: Any
    cancelled_by: Any
    callback_url: Any


def scan_json(scan: Scan) -> bytes:
    """``encoder.encode(scan_out(scan))``; a scan that ran (history, results, a cancel) takes ``scan_out`` itself."""
    options = scan.options
    if scan.history or scan.result is not None or scan.cancelled_by is not None or type(options) is not dict:
        return encoder.encode(scan_out(scan))
    actor = scan.submitted_by
    return encoder.encode(
        AnswerOut(
            scan.scan_id,
            scan.status,
            scan.target,
            scan.scanner,
            options,
            scan.priority,
            scan.attempt,
            scan.max_attempts,
            scan.created_at,
            scan.updated_at,
            scan.available_at,
            scan.started_at,
            scan.finished_at,
            scan.lease_owner,
            scan.lease_expires_at,
            scan.error,
            None,
            scan.idempotency_key,
            scan.cancel_requested,
            [],
            scan.tenant,
            None if actor is None else {"token_id": actor.token_id, "token_name": actor.token_name},
            None,
            scan.callback_url,
        )
    )


__all__ = ["AnswerOut", "scan_json"]
