"""``POST /scans``'s answer is built without a header dict, and ``scan_out`` builds its ``ScanOut`` positionally:
the bytes ``json_response`` gives, and the record one built by name gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from scanq.api.http import encoder, json_response
from scanq.api.ingest import REPLAYED_HEADER, ScanAnswer, scan_location
from scanq.ids import new_scan_id
from scanq.models import Actor, Attempt, NewScan, Outcome, Scan, ScanStatus
from scanq.store.base import accepted_scan
from scanq.views import ActorOut, AttemptOut, ScanOut, scan_out


@pytest.mark.parametrize("is_new", [True, False])
@pytest.mark.parametrize(
    "new",
    [
        NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), target="example.com", scanner="noop"),
        NewScan(
            scan_id=new_scan_id(),
            created_at=datetime.now(UTC),
            target="ex\u00e4mple.com",
            scanner="mock",
            options={"b": [1, 2.5, None], "a": "\u2603"},
            idempotency_key="k-1",
            tenant="acme",
            submitted_by=Actor(token_id="tok_1", token_name="ci"),
            callback_url="https://hooks.example.com/x",
        ),
    ],
)
def test_scan_answer_is_json_response_byte_for_byte(new: NewScan, is_new: bool) -> None:
    scan = accepted_scan(new, updated_at=datetime.now(UTC))
    location = scan_location(scan.scan_id)
    if is_new:
        expected = json_response(scan_out(scan), status_code=202, headers={"Location": location})
    else:
        expected = json_response(scan_out(scan), headers={"Location": location, REPLAYED_HEADER: "true"})
    answer = ScanAnswer(encoder.encode(scan_out(scan)), location=location, is_new=is_new)
    assert answer.status_code == expected.status_code
    assert answer.raw_headers == expected.raw_headers
    assert answer.body == expected.body
    assert answer.background is None


def _scans() -> list[Scan]:
    now = datetime.now(UTC)
    plain = accepted_scan(
        NewScan(scan_id=new_scan_id(), created_at=now, target="example.com", scanner="noop"), updated_at=now
    )
    full = accepted_scan(
        NewScan(
            scan_id=new_scan_id(),
            created_at=now,
            target='ex\u00e4mple.com "quoted" \\ </script>',
            scanner="mock",
            options={"target_key": 1, "nested": {"a": [1, 2.5, None, True]}, "\u2603": -0.0},
            priority=-7,
            max_attempts=9,
            available_at=now + timedelta(seconds=30),
            idempotency_key="k-1",
            tenant="acme",
            submitted_by=Actor(token_id="tok_1", token_name=None),
            target_key="example.com",
            callback_url="https://hooks.example.com/x?a=1&b=\u00e9",
        ),
        updated_at=now,
    )
    attempt = Attempt(attempt=1, worker="w-1", started_at=now, finished_at=now, outcome=Outcome.COMPLETE)
    ran = replace(
        full,
        status=ScanStatus.COMPLETE,
        attempt=1,
        history=(attempt,),
        result={"ok": True},
        # Distinct values in every field, so a field out of place in scan_out shows.
        started_at=now + timedelta(seconds=1),
        finished_at=now + timedelta(seconds=2),
        lease_owner="w-1",
        lease_expires_at=now + timedelta(seconds=3),
        error="x",
    )
    cancelled = replace(plain, status=ScanStatus.CANCELLED, cancelled_by=Actor(token_id="t", token_name="n"))
    read_only = replace(plain, options=MappingProxyType({"a": 1}))
    return [plain, full, ran, cancelled, read_only, replace(full, cancel_requested=True, submitted_by=None)]


def _scan_out_by_name(scan: Scan) -> ScanOut:
    """``scan_out`` written with keywords: what its positional build must equal."""
    return ScanOut(
        scan_id=scan.scan_id,
        status=scan.status,
        target=scan.target,
        scanner=scan.scanner,
        options=dict(scan.options),
        priority=scan.priority,
        attempt=scan.attempt,
        max_attempts=scan.max_attempts,
        created_at=scan.created_at,
        updated_at=scan.updated_at,
        available_at=scan.available_at,
        started_at=scan.started_at,
        finished_at=scan.finished_at,
        lease_owner=scan.lease_owner,
        lease_expires_at=scan.lease_expires_at,
        error=scan.error,
        result=None if scan.result is None else dict(scan.result),
        idempotency_key=scan.idempotency_key,
        cancel_requested=scan.cancel_requested,
        history=[
            AttemptOut(
                attempt=a.attempt,
                worker=a.worker,
                started_at=a.started_at,
                finished_at=a.finished_at,
                outcome=a.outcome,
                error=a.error,
            )
            for a in scan.history
        ],
        tenant=scan.tenant,
        submitted_by=None
        if scan.submitted_by is None
        else ActorOut(token_id=scan.submitted_by.token_id, token_name=scan.submitted_by.token_name),
        cancelled_by=None
        if scan.cancelled_by is None
        else ActorOut(token_id=scan.cancelled_by.token_id, token_name=scan.cancelled_by.token_name),
        callback_url=scan.callback_url,
    )


@pytest.mark.parametrize("scan", _scans())
def test_scan_out_built_by_position_is_the_one_built_by_name(scan: Scan) -> None:
    assert scan_out(scan) == _scan_out_by_name(scan)
    assert encoder.encode(scan_out(scan)) == encoder.encode(_scan_out_by_name(scan))


def test_scan_outs_fields_encode_by_name_in_declared_order() -> None:
    """msgspec encodes a struct's fields by name in declared order: positional building changes no byte."""
    config = ScanOut.__struct_config__
    assert (config.omit_defaults, config.array_like, config.tag) == (False, False, None)
    assert ScanOut.__struct_encode_fields__ == ScanOut.__struct_fields__
    assert ActorOut.__struct_fields__ == ("token_id", "token_name")
