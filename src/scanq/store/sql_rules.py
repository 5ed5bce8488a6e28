"""The lifecycle rules (``scanq.lifecycle``) rendered as SQL expressions, for SQLite and PostgreSQL alike.

A fenced ``UPDATE`` carries a transition out; this module writes the value of
each column it sets from the rules table, so the SQL stores never restate a
rule. Only the spelling of "now", of the stored columns and of the worker's
reported values differs between the two databases: ``SqlNames`` holds it.

>>> names = SqlNames(now="now()", column="s.{}".format)
>>> render(LEASE_EXPIRED, names).status
"CASE WHEN s.cancel_requested THEN 'Cancelled' WHEN s.attempt < s.max_attempts THEN 'Accepted' ELSE 'Error' END"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scanq.lifecycle import (
    LEASE_EXPIRED_ERROR,
    AvailableChange,
    Condition,
    ErrorChange,
    HistoryError,
    Rule,
    Transition,
)
from scanq.models import Outcome


@dataclass(frozen=True, kw_only=True, slots=True)
class SqlNames:
    """How one statement spells the values a transition reads.

    Args:
        now: the statement's "now" (``now()``, ``:now``).
        column: the stored value of a column by name (``s.status``, ``scans.status``).
        given_error: the error the worker reported (``l.error``), NULL when the event has none.
        given_result: the worker's result (``l.result``).
        retry_at: the worker's retry time (``l.retry_at``).
        outcome: the worker's outcome (``l.outcome``), for ``render_by_outcome``.
    """

    now: str
    column: Callable[[str], str]
    given_error: str = "NULL"
    given_result: str = "NULL"
    retry_at: str = "NULL"
    outcome: str = "NULL"


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderedTransition:
    """One SQL expression per column a transition sets, and the two that close the history entry."""

    status: str
    attempt: str
    error: str
    result: str
    finished_at: str
    available_at: str
    history_outcome: str
    history_error: str


def literal(value: str | None) -> str:
    """A SQL string literal (or NULL)."""
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def condition(cond: Condition, names: SqlNames) -> str:
    """The SQL predicate of a rule's condition, on the stored row."""
    if cond is Condition.CANCEL_REQUESTED:
        return names.column("cancel_requested")
    if cond is Condition.ATTEMPTS_LEFT:
        return f"{names.column('attempt')} < {names.column('max_attempts')}"
    return "TRUE"


def status_of(t: Transition, names: SqlNames) -> str:
    return literal(t.status.value)


def attempt_of(t: Transition, names: SqlNames) -> str:
    stored = names.column("attempt")
    if t.attempt_delta == 0:
        return stored
    return f"{stored} {'+' if t.attempt_delta > 0 else '-'} {abs(t.attempt_delta)}"


def error_of(t: Transition, names: SqlNames) -> str:
    if t.error is ErrorChange.KEEP:
        return names.column("error")
    if t.error is ErrorChange.GIVEN:
        return names.given_error
    if t.error is ErrorChange.LEASE_EXPIRED:
        return literal(LEASE_EXPIRED_ERROR)
    return "NULL"


def result_of(t: Transition, names: SqlNames) -> str:
    return names.given_result if t.keeps_result else "NULL"


def finished_at_of(t: Transition, names: SqlNames) -> str:
    return names.now if t.is_finished else names.column("finished_at")


def available_at_of(t: Transition, names: SqlNames) -> str:
    if t.available is AvailableChange.NOW:
        return names.now
    if t.available is AvailableChange.RETRY_AT:
        # The later of the two (NULL compares unknown: now), spelled alike in SQLite and PostgreSQL.
        return f"CASE WHEN {names.retry_at} > {names.now} THEN {names.retry_at} ELSE {names.now} END"
    return names.column("available_at")


def history_outcome_of(t: Transition, names: SqlNames) -> str:
    return literal(t.outcome.value)


def history_error_of(t: Transition, names: SqlNames) -> str:
    if t.history_error is HistoryError.GIVEN:
        return names.given_error
    if t.history_error is HistoryError.LEASE_EXPIRED:
        return literal(LEASE_EXPIRED_ERROR)
    return "NULL"


Field = Callable[[Transition, SqlNames], str]


def case_by_rules(rules: Sequence[Rule], field: Field, names: SqlNames) -> str:
    """``CASE WHEN <condition> THEN <value> … ELSE <value> END`` over ``rules``; just the value when all agree."""
    values = [(rule.when, field(rule.then, names)) for rule in rules]
    if len({value for _, value in values}) == 1:
        return values[0][1]
    # Rules after ALWAYS never apply; the last one written becomes the ELSE.
    branches: list[str] = []
    for cond, value in values:
        if cond is Condition.ALWAYS:
            return "CASE " + " ".join(branches) + f" ELSE {value} END"
        branches.append(f"WHEN {condition(cond, names)} THEN {value}")
    return "CASE " + " ".join(branches) + " END"


def case_by_outcome(transitions: Mapping[Outcome, Transition], field: Field, names: SqlNames) -> str:
    """``CASE <outcome> WHEN 'Complete' THEN <value> … END`` over the worker's reported outcome."""
    values = {outcome: field(t, names) for outcome, t in transitions.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    branches = " ".join(f"WHEN {literal(outcome.value)} THEN {value}" for outcome, value in values.items())
    return f"CASE {names.outcome} {branches} END"


FIELDS: Mapping[str, Field] = {
    "status": status_of,
    "attempt": attempt_of,
    "error": error_of,
    "result": result_of,
    "finished_at": finished_at_of,
    "available_at": available_at_of,
    "history_outcome": history_outcome_of,
    "history_error": history_error_of,
}


def render(rules: Sequence[Rule], names: SqlNames) -> RenderedTransition:
    """The expressions of a rules table (``lifecycle.LEASE_EXPIRED``, ``lifecycle.RELEASE``)."""
    return RenderedTransition(**{name: case_by_rules(rules, field, names) for name, field in FIELDS.items()})


def render_by_outcome(transitions: Mapping[Outcome, Transition], names: SqlNames) -> RenderedTransition:
    """The expressions of ``lifecycle.FINISH``, chosen by the outcome each row reports (``names.outcome``)."""
    return RenderedTransition(**{name: case_by_outcome(transitions, field, names) for name, field in FIELDS.items()})


__all__ = [
    "RenderedTransition",
    "SqlNames",
    "case_by_outcome",
    "case_by_rules",
    "condition",
    "literal",
    "render",
    "render_by_outcome",
]
