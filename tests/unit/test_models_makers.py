"""The positional makers of the hot paths build the same records as the constructors, and stay frozen."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from scanq import models
from scanq.models import Actor, Attempt, Finish, Lease, Outcome, Scan, ScanStatus

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
    (models.make_lease, LEASE),
    (models.make_attempt, ATTEMPT),
    (models.make_scan, SCAN),
    (models.make_finish, FINISH),
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
        models.make_finish(LEASE, Outcome.COMPLETE)


@pytest.mark.parametrize(("cls", "order"), FIELD_ORDERS.items(), ids=lambda value: getattr(value, "__name__", ""))
def test_the_field_orders_the_positional_calls_rely_on(cls: type, order: tuple[str, ...]) -> None:
    assert tuple(f.name for f in dataclasses.fields(cls)) == order


def test_status_by_name_covers_every_status() -> None:
    assert {name: models.STATUS_BY_NAME[name] for name in ScanStatus} == {s.value: s for s in ScanStatus}
