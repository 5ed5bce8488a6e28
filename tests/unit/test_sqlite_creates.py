"""The SQLite create path: records built by position (those ``store.base.accepted_scan`` builds), flat insert rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from scanq.ids import new_scan_id
from scanq.models import Actor, Created, NewScan, Scan, ScanStatus
from scanq.store.base import accepted_scan
from scanq.store.sqlite.rows import accepted_created, actor_json, insert_params, insert_row
from scanq.store.sqlite.statements import INSERT_COLUMNS

NOW = datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "new",
    [
        NewScan(scan_id=new_scan_id(), created_at=NOW, target="example.com", scanner="noop"),
        NewScan(scan_id=new_scan_id(), created_at=NOW, target=None, scanner="mock", priority=-3, max_attempts=1),
        NewScan(
            scan_id=new_scan_id(),
            created_at=NOW,
            target="ex\u00e4mple.com",
            scanner="mock",
            options=MappingProxyType({"b": [1, 2.5, None], "a": "\u2603"}),
            priority=7,
            max_attempts=5,
            available_at=NOW + timedelta(seconds=30),
            idempotency_key="k-1",
            tenant="acme",
            submitted_by=Actor(token_id="tok_1", token_name="ci"),
            target_key="example.com",
            callback_url="https://hooks.example.com/x",
        ),
    ],
)
def test_accepted_created_is_the_accepted_scan(new: NewScan) -> None:
    updated_at = NOW + timedelta(microseconds=7)
    created = accepted_created(new, updated_at)
    # Built by keyword here: both accepted_scan and accepted_created build by position.
    by_name = Scan(
        scan_id=new.scan_id,
        status=ScanStatus.ACCEPTED,
        target=new.target,
        scanner=new.scanner,
        options=dict(new.options),
        priority=new.priority,
        attempt=0,
        max_attempts=new.max_attempts,
        created_at=new.created_at,
        updated_at=updated_at,
        available_at=new.available_at or new.created_at,
        idempotency_key=new.idempotency_key,
        tenant=new.tenant,
        submitted_by=new.submitted_by,
        target_key=new.target_key,
        callback_url=new.callback_url,
    )
    assert created == Created(scan=accepted_scan(new, updated_at=updated_at), is_new=True)
    assert created == Created(scan=by_name, is_new=True)
    assert type(created.scan.options) is dict  # a copy the caller may not share with the submission
    assert created.scan.options is not new.options


def test_insert_params_are_each_scans_row_in_order() -> None:
    ci, other = Actor(token_id="tok_1", token_name="ci"), Actor(token_id="tok_2", token_name=None)
    scans = [
        NewScan(scan_id=new_scan_id(), created_at=NOW, scanner="noop", submitted_by=ci),
        NewScan(scan_id=new_scan_id(), created_at=NOW, scanner="noop", submitted_by=ci, options={"a": 1}),
        NewScan(scan_id=new_scan_id(), created_at=NOW, scanner="noop"),
        NewScan(scan_id=new_scan_id(), created_at=NOW, scanner="noop", submitted_by=other),
    ]
    params = insert_params(scans)
    assert params == [value for new in scans for value in insert_row(new)]
    assert len(params) == INSERT_COLUMNS * len(scans)
    assert params[INSERT_COLUMNS - 5 :: INSERT_COLUMNS] == [actor_json(new.submitted_by) for new in scans]
    assert params[INSERT_COLUMNS - 2 :: INSERT_COLUMNS] == [None] * 4  # fair_key and updated_at: the writer's
    assert params[INSERT_COLUMNS - 1 :: INSERT_COLUMNS] == [None] * 4
