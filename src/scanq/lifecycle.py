"""The scan's state machine: what each event does to a scan, written once.

::

    Accepted ──claim──▶ Running ──finish Complete──▶ Complete
       ▲  │                │ ├──finish Error / no attempts left──▶ Error
       │  │                │ ├──finish Cancelled / cancel requested──▶ Cancelled
       │  └──cancel──▶ Cancelled
       └── finish Retry, lease expired (attempts left), release ──┘

Every rule is data: a ``Transition`` says which status the scan gets, how the
open history entry closes, and what happens to ``attempt``, ``error``,
``result``, ``finished_at`` and ``available_at``. The ``Rule`` tuples say which
transition applies under which ``Condition``, first match wins.

Who uses it:

- ``ScanService`` asks ``cancel_action`` what a cancel does;
- the worker asks ``after_failure`` whether a failed attempt is retried;
- ``MemoryStore`` (the reference) applies transitions with ``apply``;
- the SQL stores render their ``CASE`` expressions from the same rules
  (``scanq.store.sql_rules``) and MongoDB turns each rule into a fenced update
  filtered by its condition. No backend restates a rule.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scanq.models import Attempt, Outcome, Scan, ScanStatus

LEASE_EXPIRED_ERROR = "lease expired"
"""The error of a scan whose last lease expired with no attempt left, and of every attempt closed by the reaper."""


class Condition(enum.Enum):
    """What a rule looks at, in the stored scan (the SQL stores render these as predicates)."""

    CANCEL_REQUESTED = "cancel_requested"
    ATTEMPTS_LEFT = "attempts_left"  # attempt < max_attempts
    ALWAYS = "always"


class ErrorChange(enum.Enum):
    """What a transition does to ``Scan.error``."""

    KEEP = "keep"
    CLEAR = "clear"
    GIVEN = "given"  # the error the worker reported with its outcome
    LEASE_EXPIRED = "lease expired"


class AvailableChange(enum.Enum):
    """What a transition does to ``Scan.available_at``."""

    KEEP = "keep"
    NOW = "now"
    # The worker's ``Finish.retry_at``, but never before the store's now at the finish: the worker's
    # clock is not the store's, and a retry claimable before its predecessor's finish would overlap it.
    RETRY_AT = "retry_at"


class HistoryError(enum.Enum):
    """The ``error`` the closed history entry records."""

    NONE = "none"
    GIVEN = "given"
    LEASE_EXPIRED = "lease expired"


@dataclass(frozen=True, kw_only=True, slots=True)
class Transition:
    """What one event does to a Running scan (the lease is always cleared)."""

    status: ScanStatus
    outcome: Outcome
    error: ErrorChange = ErrorChange.KEEP
    history_error: HistoryError = HistoryError.NONE
    keeps_result: bool = False  # True: ``result`` is the worker's; False: cleared
    is_finished: bool = False  # True: ``finished_at`` = now; False: kept
    available: AvailableChange = AvailableChange.KEEP
    attempt_delta: int = 0  # -1: the attempt is given back (a release does not count)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    when: Condition
    then: Transition


# -- the rules ------------------------------------------------------------------------------------

FINISH: Mapping[Outcome, Transition] = {
    Outcome.COMPLETE: Transition(
        status=ScanStatus.COMPLETE,
        outcome=Outcome.COMPLETE,
        error=ErrorChange.CLEAR,
        history_error=HistoryError.GIVEN,
        keeps_result=True,
        is_finished=True,
    ),
    Outcome.ERROR: Transition(
        status=ScanStatus.ERROR,
        outcome=Outcome.ERROR,
        error=ErrorChange.GIVEN,
        history_error=HistoryError.GIVEN,
        is_finished=True,
    ),
    Outcome.CANCELLED: Transition(
        status=ScanStatus.CANCELLED,
        outcome=Outcome.CANCELLED,
        error=ErrorChange.GIVEN,
        history_error=HistoryError.GIVEN,
        is_finished=True,
    ),
    Outcome.RETRY: Transition(
        status=ScanStatus.ACCEPTED,
        outcome=Outcome.RETRY,
        error=ErrorChange.GIVEN,
        history_error=HistoryError.GIVEN,
        available=AvailableChange.RETRY_AT,
    ),
}
"""A worker's fenced ``finish``: the outcome it reports decides."""

LEASE_EXPIRED: tuple[Rule, ...] = (
    Rule(
        when=Condition.CANCEL_REQUESTED,
        then=Transition(
            status=ScanStatus.CANCELLED,
            outcome=Outcome.LEASE_EXPIRED,
            history_error=HistoryError.LEASE_EXPIRED,
            is_finished=True,
        ),
    ),
    Rule(
        when=Condition.ATTEMPTS_LEFT,
        then=Transition(
            status=ScanStatus.ACCEPTED,
            outcome=Outcome.LEASE_EXPIRED,
            history_error=HistoryError.LEASE_EXPIRED,
            available=AvailableChange.NOW,
        ),
    ),
    Rule(
        when=Condition.ALWAYS,
        then=Transition(
            status=ScanStatus.ERROR,
            outcome=Outcome.LEASE_EXPIRED,
            error=ErrorChange.LEASE_EXPIRED,
            history_error=HistoryError.LEASE_EXPIRED,
            is_finished=True,
        ),
    ),
)
"""The reaper: a Running scan whose lease expired (its worker is presumed dead; the attempt counts)."""

RELEASE: tuple[Rule, ...] = (
    Rule(
        when=Condition.CANCEL_REQUESTED,
        then=Transition(status=ScanStatus.CANCELLED, outcome=Outcome.CANCELLED, is_finished=True),
    ),
    Rule(
        when=Condition.ALWAYS,
        then=Transition(
            status=ScanStatus.ACCEPTED,
            outcome=Outcome.RELEASED,
            available=AvailableChange.NOW,
            attempt_delta=-1,
        ),
    ),
)
"""A stopping worker hands back a scan it holds: not counted as an attempt, unless its cancel was pending."""


class CancelAction(enum.Enum):
    """What ``cancel`` does to a scan, by its status."""

    CANCEL_NOW = "cancel now"  # Accepted: Cancelled at once (``finished_at`` set, no attempt to close)
    REQUEST = "request"  # Running: ``cancel_requested`` set; the holder stops it (FINISH[CANCELLED]) or RELEASE does
    REFUSE = "refuse"  # terminal: ``ScanFinished``


CANCEL: Mapping[ScanStatus, CancelAction] = {
    ScanStatus.ACCEPTED: CancelAction.CANCEL_NOW,
    ScanStatus.RUNNING: CancelAction.REQUEST,
    ScanStatus.COMPLETE: CancelAction.REFUSE,
    ScanStatus.ERROR: CancelAction.REFUSE,
    ScanStatus.CANCELLED: CancelAction.REFUSE,
}

CANCELLABLE_STATUSES: tuple[ScanStatus, ...] = tuple(s for s, a in CANCEL.items() if a is not CancelAction.REFUSE)


# -- deciding -------------------------------------------------------------------------------------


def holds(condition: Condition, scan: Scan) -> bool:
    """Whether ``condition`` is true of ``scan``."""
    if condition is Condition.CANCEL_REQUESTED:
        return scan.cancel_requested
    if condition is Condition.ATTEMPTS_LEFT:
        return scan.attempt < scan.max_attempts
    return True


def choose(rules: Sequence[Rule], scan: Scan) -> Transition:
    """The transition of the first rule whose condition holds for ``scan``."""
    for rule in rules:
        if holds(rule.when, scan):
            return rule.then
    raise ValueError("no rule applies: the last rule of a table must be Condition.ALWAYS")


def cancel_action(status: ScanStatus) -> CancelAction:
    """What cancelling a scan in ``status`` does."""
    return CANCEL[status]


def after_failure(*, attempt: int, max_attempts: int) -> Outcome:
    """A failure that may pass (transient error, scan timeout): RETRY while attempts are left, else ERROR."""
    return Outcome.RETRY if attempt < max_attempts else Outcome.ERROR


def scan_timeout_error(timeout_s: float) -> str:
    """The error of an attempt stopped for running longer than ``timeout_s``."""
    return f"scan timed out after {timeout_s:g}s"


# -- applying (the reference; the SQL and MongoDB stores render the same rules) -----------------------


def apply(
    scan: Scan,
    transition: Transition,
    *,
    now: datetime,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    retry_at: datetime | None = None,
) -> Scan:
    """``scan`` after ``transition`` at ``now``: lease cleared, open history entry closed.

    Args:
        error: the error the worker reported (``ErrorChange.GIVEN``/``HistoryError.GIVEN``).
        result: the worker's result (kept when ``keeps_result``).
        retry_at: when a retried scan becomes claimable again (``AvailableChange.RETRY_AT``); never before ``now``.
    """
    return dataclasses.replace(
        scan,
        status=transition.status,
        attempt=scan.attempt + transition.attempt_delta,
        error=_error(transition.error, scan.error, error),
        result=result if transition.keeps_result else None,
        finished_at=now if transition.is_finished else scan.finished_at,
        available_at=_available(transition.available, scan.available_at, now, retry_at),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=now,
        history=close_attempt(
            scan.history, outcome=transition.outcome, at=now, error=history_error(transition.history_error, error)
        ),
    )


def error_value(change: ErrorChange, given: str | None) -> str | None:
    """The new ``error`` for every change but KEEP (which keeps the stored one)."""
    if change is ErrorChange.GIVEN:
        return given
    if change is ErrorChange.LEASE_EXPIRED:
        return LEASE_EXPIRED_ERROR
    return None


def history_error(change: HistoryError, given: str | None) -> str | None:
    """The ``error`` recorded in the closed history entry."""
    if change is HistoryError.GIVEN:
        return given
    if change is HistoryError.LEASE_EXPIRED:
        return LEASE_EXPIRED_ERROR
    return None


def close_attempt(
    history: tuple[Attempt, ...], *, outcome: Outcome, at: datetime, error: str | None
) -> tuple[Attempt, ...]:
    """``history`` with its last (open) entry closed."""
    if not history:
        return history
    last = dataclasses.replace(history[-1], finished_at=at, outcome=outcome, error=error)
    return (*history[:-1], last)


def _error(change: ErrorChange, stored: str | None, given: str | None) -> str | None:
    return stored if change is ErrorChange.KEEP else error_value(change, given)


def _available(change: AvailableChange, stored: datetime, now: datetime, retry_at: datetime | None) -> datetime:
    if change is AvailableChange.NOW:
        return now
    if change is AvailableChange.RETRY_AT:
        return now if retry_at is None else max(retry_at, now)
    return stored


__all__ = [
    "CANCEL",
    "CANCELLABLE_STATUSES",
    "FINISH",
    "LEASE_EXPIRED",
    "LEASE_EXPIRED_ERROR",
    "RELEASE",
    "AvailableChange",
    "CancelAction",
    "Condition",
    "ErrorChange",
    "HistoryError",
    "Rule",
    "Transition",
    "after_failure",
    "apply",
    "cancel_action",
    "choose",
    "close_attempt",
    "error_value",
    "history_error",
    "scan_timeout_error",
]
