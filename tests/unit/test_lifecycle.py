"""The scan's state machine (``scanq.lifecycle``), checked without any store, and its SQL rendering against it."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from scanq import lifecycle
from scanq.lifecycle import CancelAction, Condition
from scanq.models import Attempt, Outcome, Scan, ScanStatus
from scanq.store.sql_rules import SqlNames, render, render_by_outcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
RETRY_AT = NOW + timedelta(seconds=30)
LAGGING_RETRY_AT = NOW - timedelta(seconds=1)  # what a worker whose clock lags the store's would send


def running(
    *, attempt: int = 1, max_attempts: int = 3, cancel_requested: bool = False, error: str | None = None
) -> Scan:
    return Scan(
        scan_id="0190f0c8-0000-7000-8000-000000000001",
        status=ScanStatus.RUNNING,
        target="example.com",
        scanner="mock",
        options={},
        priority=0,
        attempt=attempt,
        max_attempts=max_attempts,
        created_at=T0,
        updated_at=T0,
        available_at=T0,
        started_at=T0,
        lease_owner="w1",
        lease_expires_at=T0 + timedelta(seconds=30),
        error=error,
        cancel_requested=cancel_requested,
        history=(Attempt(attempt=attempt, worker="w1", started_at=T0),),
    )


# -- the rules as a user of scanq states them ----------------------------------------------------------


def test_an_expired_lease_with_attempts_left_requeues_the_scan_at_once_and_counts_the_attempt() -> None:
    scan = lifecycle.apply(running(attempt=1), lifecycle.choose(lifecycle.LEASE_EXPIRED, running(attempt=1)), now=NOW)
    assert (scan.status, scan.attempt, scan.available_at, scan.finished_at, scan.error) == (
        ScanStatus.ACCEPTED,
        1,
        NOW,
        None,
        None,
    )
    assert scan.history[-1] == Attempt(
        attempt=1, worker="w1", started_at=T0, finished_at=NOW, outcome=Outcome.LEASE_EXPIRED, error="lease expired"
    )
    assert (scan.lease_owner, scan.lease_expires_at) == (None, None)


def test_an_expired_lease_on_the_last_attempt_is_an_error() -> None:
    last = running(attempt=3, max_attempts=3)
    scan = lifecycle.apply(last, lifecycle.choose(lifecycle.LEASE_EXPIRED, last), now=NOW)
    assert (scan.status, scan.error, scan.finished_at, scan.available_at) == (
        ScanStatus.ERROR,
        lifecycle.LEASE_EXPIRED_ERROR,
        NOW,
        T0,
    )


def test_an_expired_lease_of_a_scan_whose_cancel_was_requested_cancels_it() -> None:
    scan = running(attempt=1, cancel_requested=True)
    after = lifecycle.apply(scan, lifecycle.choose(lifecycle.LEASE_EXPIRED, scan), now=NOW)
    assert (after.status, after.finished_at, after.error) == (ScanStatus.CANCELLED, NOW, None)
    assert after.history[-1].outcome == Outcome.LEASE_EXPIRED


def test_a_release_gives_the_attempt_back_and_requeues_at_once() -> None:
    scan = running(attempt=2)
    after = lifecycle.apply(scan, lifecycle.choose(lifecycle.RELEASE, scan), now=NOW)
    assert (after.status, after.attempt, after.available_at, after.finished_at) == (ScanStatus.ACCEPTED, 1, NOW, None)
    assert (after.history[-1].outcome, after.history[-1].error) == (Outcome.RELEASED, None)


def test_a_release_of_a_scan_whose_cancel_was_requested_cancels_it_and_keeps_the_attempt() -> None:
    scan = running(attempt=2, cancel_requested=True)
    after = lifecycle.apply(scan, lifecycle.choose(lifecycle.RELEASE, scan), now=NOW)
    assert (after.status, after.attempt, after.finished_at) == (ScanStatus.CANCELLED, 2, NOW)
    assert after.history[-1].outcome == Outcome.CANCELLED


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.COMPLETE, ScanStatus.COMPLETE),
        (Outcome.ERROR, ScanStatus.ERROR),
        (Outcome.CANCELLED, ScanStatus.CANCELLED),
        (Outcome.RETRY, ScanStatus.ACCEPTED),
    ],
)
def test_a_finish_sets_the_status_its_outcome_names(outcome: Outcome, status: ScanStatus) -> None:
    after = lifecycle.apply(
        running(), lifecycle.FINISH[outcome], now=NOW, error="boom", result={"ok": True}, retry_at=RETRY_AT
    )
    assert after.status == status
    assert after.history[-1].outcome == outcome
    assert after.history[-1].error == "boom"
    assert after.result == ({"ok": True} if outcome is Outcome.COMPLETE else None)
    assert after.error == (None if outcome is Outcome.COMPLETE else "boom")
    assert after.finished_at == (None if outcome is Outcome.RETRY else NOW)
    assert after.available_at == (RETRY_AT if outcome is Outcome.RETRY else T0)
    assert after.attempt == 1


def test_a_retry_without_a_time_is_due_now() -> None:
    assert lifecycle.apply(running(), lifecycle.FINISH[Outcome.RETRY], now=NOW).available_at == NOW


def test_a_retry_is_never_due_before_its_predecessor_finished() -> None:
    after = lifecycle.apply(running(), lifecycle.FINISH[Outcome.RETRY], now=NOW, retry_at=LAGGING_RETRY_AT)

    assert after.available_at == NOW
    assert after.history[-1].finished_at == NOW


def test_every_finish_outcome_has_a_transition() -> None:
    assert set(lifecycle.FINISH) == {Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED, Outcome.RETRY}


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (ScanStatus.ACCEPTED, CancelAction.CANCEL_NOW),
        (ScanStatus.RUNNING, CancelAction.REQUEST),
        (ScanStatus.COMPLETE, CancelAction.REFUSE),
        (ScanStatus.ERROR, CancelAction.REFUSE),
        (ScanStatus.CANCELLED, CancelAction.REFUSE),
    ],
)
def test_cancel_depends_on_the_status(status: ScanStatus, action: CancelAction) -> None:
    assert lifecycle.cancel_action(status) is action


def test_only_unfinished_scans_are_cancellable() -> None:
    assert set(lifecycle.CANCELLABLE_STATUSES) == {ScanStatus.ACCEPTED, ScanStatus.RUNNING}


@pytest.mark.parametrize(("attempt", "expected"), [(1, Outcome.RETRY), (2, Outcome.RETRY), (3, Outcome.ERROR)])
def test_a_failure_is_retried_while_attempts_are_left(attempt: int, expected: Outcome) -> None:
    assert lifecycle.after_failure(attempt=attempt, max_attempts=3) is expected


def test_a_table_where_no_rule_applies_is_refused_with_the_rule_it_breaks() -> None:
    only_on_cancel = tuple(rule for rule in lifecycle.LEASE_EXPIRED if rule.when is Condition.CANCEL_REQUESTED)
    assert only_on_cancel
    with pytest.raises(ValueError) as refused:
        lifecycle.choose(only_on_cancel, running(cancel_requested=False))
    assert str(refused.value) == "no rule applies: the last rule of a table must be Condition.ALWAYS"


@pytest.mark.parametrize("rules_name", ["LEASE_EXPIRED", "RELEASE"])
def test_every_transition_stamps_the_update_time(rules_name: str) -> None:
    for scan in (running(), running(cancel_requested=True), running(attempt=3)):
        after = lifecycle.apply(scan, lifecycle.choose(getattr(lifecycle, rules_name), scan), now=NOW)
        assert after.updated_at == NOW


def test_every_finish_stamps_the_update_time() -> None:
    for outcome in lifecycle.FINISH:
        after = lifecycle.apply(running(), lifecycle.FINISH[outcome], now=NOW, retry_at=RETRY_AT)
        assert after.updated_at == NOW


def test_every_rules_table_ends_with_a_rule_that_always_applies() -> None:
    for rules in (lifecycle.LEASE_EXPIRED, lifecycle.RELEASE):
        assert rules[-1].when is Condition.ALWAYS
        assert all(rule.when is not Condition.ALWAYS for rule in rules[:-1])


def test_a_lease_expiry_or_release_never_leaves_a_scan_running() -> None:
    for rules in (lifecycle.LEASE_EXPIRED, lifecycle.RELEASE):
        assert all(rule.then.status is not ScanStatus.RUNNING for rule in rules)


# -- the SQL the stores run says the same as the rules ------------------------------------------------

_COLUMNS = "status, attempt, error, result, finished_at, available_at, history_outcome, history_error"
_EPOCH = {T0: 0.0, NOW: 300.0, RETRY_AT: 330.0, LAGGING_RETRY_AT: 299.0}


def _run_rendered(
    expressions: object, scan: Scan, *, outcome: str | None, error: str | None, retry_at: datetime | None = RETRY_AT
) -> tuple[object, ...]:
    """Evaluate rendered expressions on one row in SQLite, the way a store's UPDATE would."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE s (status TEXT, attempt INT, max_attempts INT, cancel_requested INT, error TEXT,"
        " finished_at REAL, available_at REAL)"
    )
    conn.execute(
        "INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?)",
        (scan.status.value, scan.attempt, scan.max_attempts, int(scan.cancel_requested), scan.error, None, 0.0),
    )
    fields = dataclasses.asdict(expressions)  # type: ignore[call-overload]
    select = ", ".join(fields[name] for name in _COLUMNS.split(", "))
    params = {
        "now": _EPOCH[NOW],
        "outcome": outcome,
        "error": error,
        "result": '{"ok": true}',
        "retry_at": None if retry_at is None else _EPOCH[retry_at],
    }
    row: tuple[object, ...] = conn.execute(f"SELECT {select} FROM s", params).fetchone()
    conn.close()
    return row


def _expected(after: Scan) -> tuple[object, ...]:
    last = after.history[-1]
    return (
        after.status.value,
        after.attempt,
        after.error,
        '{"ok": true}' if after.result else None,
        _EPOCH[after.finished_at] if after.finished_at else None,
        _EPOCH[after.available_at],
        last.outcome.value if last.outcome else None,
        last.error,
    )


NAMES = SqlNames(
    now=":now",
    column="s.{}".format,
    given_error=":error",
    given_result=":result",
    retry_at=":retry_at",
    outcome=":outcome",
)
CASES = [
    running(attempt=attempt, max_attempts=3, cancel_requested=cancel, error=error)
    for attempt, cancel, error in itertools.product((1, 3), (False, True), (None, "earlier"))
]


@pytest.mark.parametrize("rules_name", ["LEASE_EXPIRED", "RELEASE"])
@pytest.mark.parametrize("scan", CASES, ids=lambda s: f"attempt{s.attempt}-cancel{s.cancel_requested}-err{s.error}")
def test_rendered_sql_rules_agree_with_the_reference(rules_name: str, scan: Scan) -> None:
    rules = getattr(lifecycle, rules_name)
    after = lifecycle.apply(scan, lifecycle.choose(rules, scan), now=NOW)
    assert _run_rendered(render(rules, NAMES), scan, outcome=None, error=None) == _expected(after)


@pytest.mark.parametrize("retry_at", [RETRY_AT, LAGGING_RETRY_AT, None], ids=["later", "lagging", "none"])
@pytest.mark.parametrize("outcome", list(lifecycle.FINISH))
def test_rendered_sql_finish_agrees_with_the_reference(outcome: Outcome, retry_at: datetime | None) -> None:
    scan = running()
    after = lifecycle.apply(
        scan, lifecycle.FINISH[outcome], now=NOW, error="boom", result={"ok": True}, retry_at=retry_at
    )
    rendered = render_by_outcome(lifecycle.FINISH, NAMES)
    assert _run_rendered(rendered, scan, outcome=outcome.value, error="boom", retry_at=retry_at) == _expected(after)
