"""``POST /scans``'s answer is built without a header dict: the same bytes as ``json_response`` gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scanq.api.http import encoder, json_response
from scanq.api.ingest import REPLAYED_HEADER, ScanAnswer, scan_location
from scanq.ids import new_scan_id
from scanq.models import Actor, NewScan
from scanq.store.base import accepted_scan
from scanq.views import scan_out


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
