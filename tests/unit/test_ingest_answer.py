"""``POST /scans``'s answer is built without a header dict and its JSON positionally: the bytes ``json_response``
and ``scan_out`` give."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from scanq.api.http import encoder, json_response
from scanq.api.ingest import REPLAYED_HEADER, ScanAnswer, scan_location
from scanq.api.scan_json import AnswerOut, scan_json
from scanq.ids import new_scan_id
from scanq.models import Actor, Attempt, NewScan, Outcome, Scan, ScanStatus
from scanq.store.base import accepted_scan
from scanq.views import ActorOut, ScanOut, scan_out


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
        started_at=now,
        finished_at=now,
        lease_owner="w-1",
        lease_expires_at=now,
        error="x",
    )
    cancelled = replace(plain, status=ScanStatus.CANCELLED, cancelled_by=Actor(token_id="t", token_name="n"))
    read_only = replace(plain, options=MappingProxyType({"a": 1}))
    return [plain, full, ran, cancelled, read_only, replace(full, cancel_requested=True, submitted_by=None)]


@pytest.mark.parametrize("scan", _scans())
def test_the_answer_json_is_scan_out_encoded_byte_for_byte(scan: Scan) -> None:
    assert scan_json(scan) == encoder.encode(scan_out(scan))


def test_the_positional_answer_has_scan_outs_fields_in_its_order_and_no_options() -> None:
    """msgspec encodes a struct's fields by name in declared order: equal lists, equal bytes."""
    assert AnswerOut.__struct_fields__ == ScanOut.__struct_fields__
    assert AnswerOut.__struct_encode_fields__ == ScanOut.__struct_encode_fields__  # the names as encoded
    for struct in (AnswerOut, ScanOut):
        config = struct.__struct_config__
        assert (config.omit_defaults, config.array_like, config.tag) == (False, False, None)
    assert ActorOut.__struct_fields__ == ("token_id", "token_name")
