"""Every statement the PostgreSQL store runs, loaded by name from ``sql/queries.sql``.

A ``-- name: x`` header starts the statement named ``x``, a ``-- fragment: x``
header a piece of SQL several statements share (the claims' SET clause and the
rows they write beside the scans). Each ``{placeholder}`` in a statement is
filled once, at import: ``{work_channel}`` and ``{events_channel}`` with the
NOTIFY channels, ``{claimed_columns}`` with what a claim returns, a fragment's
name with its text, and the column values of the three statements that carry out a
lifecycle transition (finish, release, requeue_expired) with the rules of
``scanq.lifecycle`` rendered by ``scanq.store.sql_rules``. The SQL text asyncpg
prepares is therefore fixed for the life of the process.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable

from scanq import lifecycle
from scanq.store.sql_rules import RenderedTransition, SqlNames, literal, render, render_by_outcome

PACKAGE = "scanq.store.postgres"
# The NOTIFY channel statements signal when they make work claimable, and the LISTEN connection hears.
WORK_CHANNEL = "scanq_work"
# The NOTIFY channel of every statement that inserts scan events (rule 10); wait_for_events hears it.
EVENTS_CHANNEL = "scanq_events"
# Advisory lock key of the count fold: a stable number derived from a name, so it does not collide by accident.
COUNT_FOLD_LOCK_KEY = zlib.crc32(b"scanq.count_fold")
# Advisory lock class (the first int4 key) of the per-target stripes a capped claim holds (lock_targets).
TARGET_LOCK_CLASS = zlib.crc32(b"scanq.target_stripes") - 2**31

SQL_DIR = "sql"
QUERIES_FILE = "queries.sql"
QUERY_NAME_PREFIX = "-- name:"
FRAGMENT_PREFIX = "-- fragment:"
COMMENT_PREFIX = "--"
# Only {identifier}: a jsonb literal such as '{}' is left alone.
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# What the claims return of each scan they make Running (rows.claimed_scan_from_row reads it): every
# column, but the history only when it holds an earlier attempt (NULL: none; the attempt the claim
# opened is never in it), so a first attempt's claim neither sends nor decodes a jsonb history.
CLAIMED_COLUMNS = (
    "s.scan_id, s.status, s.target, s.scanner, s.options, s.priority, s.attempt, s.max_attempts,"
    " s.created_at, s.updated_at, s.available_at, s.started_at, s.finished_at, s.lease_owner,"
    " s.lease_expires_at, s.error, s.result, s.idempotency_key, s.cancel_requested, s.tenant,"
    " s.submitted_by, s.submitted_by_name, s.cancelled_by, s.cancelled_by_name, s.fair_key, s.target_key,"
    " s.callback_url, s.attempt_worker, CASE WHEN jsonb_array_length(s.history) > 0 THEN s.history END AS history"
)

# The scan row is ``s``; a fenced batch's reported values come from the unnest row ``l``.
_STORED = SqlNames(now="now()", column="s.{}".format)
_REPORTED = dataclasses.replace(
    _STORED, given_error="l.error", given_result="l.result", retry_at="l.retry_at", outcome="l.outcome"
)

TRANSITIONS: Mapping[str, RenderedTransition] = {
    "finish": render_by_outcome(lifecycle.FINISH, _REPORTED),
    "release": render(lifecycle.RELEASE, _STORED),
    "requeue_expired": render(lifecycle.LEASE_EXPIRED, _STORED),
}
"""The statements that carry out a lifecycle transition, and the column values they set."""


def sql_dir() -> Traversable:
    """The directory shipped inside the package with ``queries.sql`` and the numbered migrations."""
    return resources.files(PACKAGE).joinpath(SQL_DIR)


def parse_sections(text: str, header: str) -> dict[str, str]:
    """The sections of ``text`` whose header starts with ``header`` (``-- name:`` or ``-- fragment:``), by name.

    Any header ends the section before it; placeholders are not yet filled.
    """
    sections: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith((QUERY_NAME_PREFIX, FRAGMENT_PREFIX)):
            name = line.removeprefix(header).strip() if line.startswith(header) else None
            if name is not None:
                sections[name] = ""
        elif name is not None:
            sections[name] += line + "\n"
    return {key: sql.strip().removesuffix(";") for key, sql in sections.items()}


def parse_queries(text: str) -> dict[str, str]:
    """Split ``text`` into statements by their ``-- name:`` headers (placeholders not yet filled)."""
    return parse_sections(text, QUERY_NAME_PREFIX)


def parse_fragments(text: str) -> dict[str, str]:
    """The ``-- fragment:`` sections of ``text``, without their comment lines (they are inlined)."""
    return {
        name: "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith(COMMENT_PREFIX))
        for name, sql in parse_sections(text, FRAGMENT_PREFIX).items()
    }


def fill(name: str, sql: str, values: Mapping[str, str]) -> str:
    """``sql`` with each ``{placeholder}`` replaced from ``values``; an unknown one is a bug in queries.sql."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"{QUERIES_FILE}: statement {name!r} uses unknown placeholder {{{key}}}")
        return values[key]

    return PLACEHOLDER.sub(value, sql)


def load_queries() -> dict[str, str]:
    """Every statement of ``queries.sql`` by name, placeholders filled."""
    text = sql_dir().joinpath(QUERIES_FILE).read_text(encoding="utf-8")
    channels = {"work_channel": literal(WORK_CHANNEL), "events_channel": literal(EVENTS_CHANNEL)}
    fragments = {name: fill(name, sql, channels) for name, sql in parse_fragments(text).items()}
    common = {**channels, **fragments, "claimed_columns": CLAIMED_COLUMNS}
    filled: dict[str, str] = {}
    for name, sql in parse_queries(text).items():
        transition = TRANSITIONS.get(name)
        values = {**common, **dataclasses.asdict(transition)} if transition is not None else common
        filled[name] = fill(name, sql, values)
    return filled


_QUERIES = load_queries()
INSERT_SCANS = _QUERIES["insert_scans"]
SELECT_BY_KEYS = _QUERIES["select_by_keys"]
SELECT_SCAN = _QUERIES["select_scan"]
LIST_ALL = _QUERIES["list_all"]
LIST_ALL_AFTER = _QUERIES["list_all_after"]
LIST_STATUS = _QUERIES["list_status"]
LIST_STATUS_AFTER = _QUERIES["list_status_after"]
LIST_TENANT = _QUERIES["list_tenant"]
LIST_TENANT_AFTER = _QUERIES["list_tenant_after"]
STATS = _QUERIES["stats"]
STATS_TENANT = _QUERIES["stats_tenant"]
FOLD_COUNTS = _QUERIES["fold_counts"]
CLAIM = _QUERIES["claim"]
CLAIM_CAPPED = _QUERIES["claim_capped"]
CLAIM_UNTARGETED = _QUERIES["claim_untargeted"]
LOCK_TARGETS = _QUERIES["lock_targets"]
TENANT_QUEUES = _QUERIES["tenant_queues"]
HEARTBEAT = _QUERIES["heartbeat"]
FINISH = _QUERIES["finish"]
RELEASE = _QUERIES["release"]
REQUEUE_EXPIRED = _QUERIES["requeue_expired"]
CANCEL = _QUERIES["cancel"]
DURABILITY_SETTINGS = _QUERIES["durability_settings"]
HAS_CLAIMABLE = _QUERIES["has_claimable"]
FINISHED_COUNTS = _QUERIES["finished_counts"]
FINISHED_COUNTS_TENANT = _QUERIES["finished_counts_tenant"]
EXPORT_SCANS = _QUERIES["export_scans"]
PRUNE_BATCH = _QUERIES["prune_batch"]
PRUNE_BATCH_TENANT = _QUERIES["prune_batch_tenant"]
PRUNE_NAMED = _QUERIES["prune_named"]
PRUNE = _QUERIES["prune"]
PRUNE_TENANT = _QUERIES["prune_tenant"]
PRUNE_NAMED_DELETE = _QUERIES["prune_named_delete"]
LEAD = _QUERIES["lead"]
RESIGN = _QUERIES["resign"]
INSERT_TOKEN = _QUERIES["insert_token"]
FIND_TOKEN = _QUERIES["find_token"]
LIST_TOKENS = _QUERIES["list_tokens"]
LIST_TENANT_TOKENS = _QUERIES["list_tenant_tokens"]
REVOKE_TOKEN = _QUERIES["revoke_token"]
TOUCH_TOKENS = _QUERIES["touch_tokens"]
SET_TENANT_LIMITS = _QUERIES["set_tenant_limits"]
GET_TENANT_LIMITS = _QUERIES["get_tenant_limits"]
LIST_TENANT_LIMITS = _QUERIES["list_tenant_limits"]
READ_EVENTS = _QUERIES["read_events"]
READ_SCAN_EVENTS = _QUERIES["read_scan_events"]
EVENTS_HEAD = _QUERIES["events_head"]
PRUNE_EVENTS = _QUERIES["prune_events"]
PRUNE_DELIVERIES = _QUERIES["prune_deliveries"]
INSERT_ENDPOINT = _QUERIES["insert_endpoint"]
SELECT_ENDPOINT = _QUERIES["select_endpoint"]
LIST_ENDPOINTS = _QUERIES["list_endpoints"]
LIST_TENANT_ENDPOINTS = _QUERIES["list_tenant_endpoints"]
DELETE_ENDPOINT = _QUERIES["delete_endpoint"]
ROTATE_ENDPOINT_SECRET = _QUERIES["rotate_endpoint_secret"]
DISPATCH_EVENTS = _QUERIES["dispatch_events"]
CLAIM_DELIVERIES = _QUERIES["claim_deliveries"]
RECORD_DELIVERIES = _QUERIES["record_deliveries"]
LIST_DELIVERIES = _QUERIES["list_deliveries"]
RETRY_DELIVERY = _QUERIES["retry_delivery"]


__all__ = [
    "CANCEL",
    "CLAIM",
    "CLAIM_CAPPED",
    "CLAIM_DELIVERIES",
    "CLAIM_UNTARGETED",
    "COUNT_FOLD_LOCK_KEY",
    "DELETE_ENDPOINT",
    "DISPATCH_EVENTS",
    "DURABILITY_SETTINGS",
    "EVENTS_CHANNEL",
    "EVENTS_HEAD",
    "EXPORT_SCANS",
    "FIND_TOKEN",
    "FINISH",
    "FINISHED_COUNTS",
    "FINISHED_COUNTS_TENANT",
    "FOLD_COUNTS",
    "GET_TENANT_LIMITS",
    "HAS_CLAIMABLE",
    "HEARTBEAT",
    "INSERT_ENDPOINT",
    "INSERT_SCANS",
    "INSERT_TOKEN",
    "LEAD",
    "LIST_ALL",
    "LIST_ALL_AFTER",
    "LIST_DELIVERIES",
    "LIST_ENDPOINTS",
    "LIST_STATUS",
    "LIST_STATUS_AFTER",
    "LIST_TENANT",
    "LIST_TENANT_AFTER",
    "LIST_TENANT_ENDPOINTS",
    "LIST_TENANT_LIMITS",
    "LIST_TENANT_TOKENS",
    "LIST_TOKENS",
    "LOCK_TARGETS",
    "PRUNE",
    "PRUNE_BATCH",
    "PRUNE_BATCH_TENANT",
    "PRUNE_DELIVERIES",
    "PRUNE_EVENTS",
    "PRUNE_NAMED",
    "PRUNE_NAMED_DELETE",
    "PRUNE_TENANT",
    "READ_EVENTS",
    "READ_SCAN_EVENTS",
    "RECORD_DELIVERIES",
    "RELEASE",
    "REQUEUE_EXPIRED",
    "RESIGN",
    "RETRY_DELIVERY",
    "REVOKE_TOKEN",
    "ROTATE_ENDPOINT_SECRET",
    "SELECT_BY_KEYS",
    "SELECT_ENDPOINT",
    "SELECT_SCAN",
    "SET_TENANT_LIMITS",
    "STATS",
    "STATS_TENANT",
    "TENANT_QUEUES",
    "TOUCH_TOKENS",
    "TRANSITIONS",
    "WORK_CHANNEL",
    "load_queries",
    "sql_dir",
]
