"""The positional makers of the hot paths build the same records as the constructors, and stay frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from typing import Any

import pytest
from bench.profiles import group_of

from scanq import record_makers
from scanq.ids import new_scan_id
from scanq.models import Actor, Attempt, Finish, Lease, NewScan, Outcome, Scan, ScanStatus

AT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
LEASE = Lease(scan_id="s1", worker_id="w1", attempt=2)
ATTEMPT = Attempt(attempt=2, worker="w1", started_at=AT, finished_at=AT, outcome=Outcome.ERROR, error="boom")
SCAN = Scan(
    scan_id="s1",
    status=ScanStatus.RUNNING,
    target="example.com",
    scanner="noop",
    options={"ports": [443]},
    priority=5,
    attempt=2,
    max_attempts=3,
    created_at=AT,
    updated_at=AT,
    available_at=AT,
    started_at=AT,
    finished_at=None,
    lease_owner="w1",
    lease_expires_at=AT,
    error=None,
    result=None,
    idempotency_key="k",
    cancel_requested=True,
    history=(ATTEMPT,),
    tenant="acme",
    submitted_by=Actor(token_id="t1", token_name="ci"),
    cancelled_by=None,
    target_key="example.com",
    callback_url="https://hooks.example.com/x",
)
FINISH = Finish(lease=LEASE, outcome=Outcome.RETRY, result=None, error="later", retry_at=AT)

# The makers take every field positionally, in declaration order, and the hot paths call them that way
# (``make_finish(lease, Outcome.COMPLETE, result, None, None)``): moving a field silently misplaces values
# there, so the orders are pinned here. Adding a field fails every call loudly (the makers have no defaults).
FIELD_ORDERS = {
    Lease: ("scan_id", "worker_id", "attempt"),
    Attempt: ("attempt", "worker", "started_at", "finished_at", "outcome", "error"),
    Finish: ("lease", "outcome", "result", "error", "retry_at"),
}
CASES: list[tuple[Any, Any]] = [
    (record_makers.make_lease, LEASE),
    (record_makers.make_attempt, ATTEMPT),
    (record_makers.make_scan, SCAN),
    (record_makers.make_finish, FINISH),
]


@pytest.mark.parametrize(("make", "expected"), CASES, ids=lambda value: type(value).__name__)
def test_a_maker_builds_the_record_the_constructor_builds(make: Any, expected: Any) -> None:
    values = [getattr(expected, f.name) for f in dataclasses.fields(expected)]
    made = make(*values)
    assert type(made) is type(expected)
    assert made == expected
    assert dataclasses.asdict(made) == dataclasses.asdict(expected)


@pytest.mark.parametrize(("make", "expected"), CASES, ids=lambda value: type(value).__name__)
def test_a_made_record_is_as_frozen_as_a_constructed_one(make: Any, expected: Any) -> None:
    made = make(*[getattr(expected, f.name) for f in dataclasses.fields(expected)])
    first = dataclasses.fields(expected)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, None)
    with pytest.raises((AttributeError, TypeError)):
        made.unknown_field = 1  # slotted: no instance dict


def test_a_maker_needs_every_field() -> None:
    with pytest.raises(TypeError):
        record_makers.make_finish(LEASE, Outcome.COMPLETE)


@pytest.mark.parametrize(("cls", "order"), FIELD_ORDERS.items(), ids=lambda value: getattr(value, "__name__", ""))
def test_the_field_orders_the_positional_calls_rely_on(cls: type, order: tuple[str, ...]) -> None:
    assert tuple(f.name for f in dataclasses.fields(cls)) == order


def test_status_by_name_covers_every_status() -> None:
    assert {name: record_makers.STATUS_BY_NAME[name] for name in ScanStatus} == {s.value: s for s in ScanStatus}


def test_make_new_scan_makes_the_record_the_constructor_makes() -> None:
    """A new submission's record: every field given (no default filled in silently), nothing run after init."""
    values: dict[str, Any] = {
        "scan_id": new_scan_id(),
        "created_at": datetime.now(UTC),
        "target": "example.com",
        "scanner": "noop",
        "options": {"a": [1]},
        "priority": -3,
        "max_attempts": 7,
        "idempotency_key": "k",
        "tenant": "acme",
        "submitted_by": Actor(token_id="t", token_name=None),
        "target_key": "example.com",
        "callback_url": "https://hooks.example.com/",
    }
    made = record_makers.make_new_scan(**values, available_at=None)
    assert made == NewScan(**values) and type(made) is NewScan
    assert made.available_at is None
    assert not hasattr(NewScan, "__post_init__")
    with pytest.raises(TypeError):
        record_makers.make_new_scan(**values)  # every field must be given: no default is filled in silently
    with pytest.raises(FrozenInstanceError):
        made.target = "other"  # type: ignore[misc]


def test_a_makers_frames_are_named_after_its_record_for_profiles() -> None:
    """py-spy names a frame by its file: "<positional_maker Scan>", not "<string>" (the event loop's group)."""
    assert record_makers.make_scan.__code__.co_filename == "<positional_maker Scan>"
    stack = ("Worker._claim (scanq/worker/loop.py:200)", "make (<positional_maker Scan>:3)")
    assert group_of(stack) == "scan service, models, ids"
