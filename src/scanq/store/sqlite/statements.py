"""The SQLite store's statements, as named constants.

Statements read and return rows in the column order of ``COLUMNS`` (see
``rows.scan_from_row``). What FINISH, RELEASE and REQUEUE_EXPIRED do to a scan
is not written here: their SET lists are rendered from ``scanq.lifecycle`` by
``scanq.store.sql_rules``; this module only says where the rows come from.

Plans matter more than text: hot statements name their partial index
(``INDEXED BY``) so a plan never depends on ANALYZE, and fenced statements take
their leases as one JSON array (``json_each``), so a batch is one set-based UPDATE.
"""

from __future__ import annotations

import functools

from scanq import lifecycle
from scanq.models import ScanStatus
from scanq.store.sql_rules import RenderedTransition, SqlNames, literal, render, render_by_outcome

COLUMNS = (
    "scan_id, status, target, scanner, options, priority, attempt, max_attempts, created_at, updated_at,"
    " available_at, started_at, finished_at, lease_owner, lease_expires_at, error, result, idempotency_key,"
    " cancel_requested, history, tenant, submitted_by, cancelled_by, target_key, callback_url"
)
# The last two values, ``fair_key`` and ``updated_at``, come from the writer's transaction (rule 9).
INSERT_SCAN = (
    "INSERT INTO scans (scan_id, status, target, scanner, options, priority, max_attempts, created_at,"
    " available_at, idempotency_key, tenant, submitted_by, target_key, callback_url, fair_key, updated_at)"
    " VALUES (?, 'Accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_COLUMNS = 15  # parameters per row of INSERT_SCAN


@functools.lru_cache(maxsize=64)
def insert_scans(rows: int) -> str:
    """INSERT_SCAN for ``rows`` rows in one statement.

    One statement is one ``sqlite3_step``: the writer thread gives up and retakes the GIL
    once per batch instead of once per row, and each retake can wait a whole switch
    interval (5 ms) behind a busy event loop.
    """
    values = ", ".join(["(?, 'Accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return INSERT_SCAN.split(" VALUES ", 1)[0] + " VALUES " + values


SELECT_SCAN = f"SELECT {COLUMNS} FROM scans WHERE scan_id = ?"
SELECT_BY_KEY = (
    f"SELECT {COLUMNS} FROM scans INDEXED BY scans_tenant_idempotency_key WHERE tenant = ? AND idempotency_key = ?"
)
SELECT_STATUS = "SELECT status, tenant FROM scans WHERE scan_id = ?"
LIST_ALL = f"SELECT {COLUMNS} FROM scans WHERE scan_id < ? ORDER BY scan_id DESC LIMIT ?"
LIST_BY_STATUS = f"SELECT {COLUMNS} FROM scans WHERE status = ? AND scan_id < ? ORDER BY scan_id DESC LIMIT ?"
# One tenant's pages walk its range of (tenant, scan_id), whatever the other tenants hold.
LIST_OF_TENANT = (
    f"SELECT {COLUMNS} FROM scans INDEXED BY scans_by_tenant WHERE tenant = ? AND scan_id < ?"
    " ORDER BY scan_id DESC LIMIT ?"
)
LIST_BY_STATUS_OF_TENANT = (
    f"SELECT {COLUMNS} FROM scans INDEXED BY scans_by_tenant WHERE tenant = ? AND status = ? AND scan_id < ?"
    " ORDER BY scan_id DESC LIMIT ?"
)
# The counts table holds a row per (tenant, status): every tenant's is a sum over a few rows per tenant.
COUNTS = "SELECT status, sum(n) FROM scan_counts GROUP BY status"
COUNTS_OF_TENANT = "SELECT status, n FROM scan_counts WHERE tenant = ?"
# A tenant's oldest Accepted scan is the first entry of its range of the partial (tenant, created_at)
# index: O(log n). Every tenant's is the least of those, one search per tenant with Accepted scans
# (the counts table names them), NULL when there is none.
OLDEST_ACCEPTED_OF_TENANT = (
    "SELECT created_at FROM scans INDEXED BY scans_accepted_by_tenant"
    " WHERE tenant = ? AND status = 'Accepted' ORDER BY created_at LIMIT 1"
)
OLDEST_ACCEPTED = """
SELECT min((SELECT created_at FROM scans INDEXED BY scans_accepted_by_tenant
            WHERE tenant = counted.tenant AND status = 'Accepted' ORDER BY created_at LIMIT 1))
FROM scan_counts AS counted WHERE counted.status = 'Accepted' AND counted.n > 0
"""
CLAIMABLE_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM scans INDEXED BY scans_claimable WHERE status = 'Accepted' AND available_at <= ?)"
)
# The event log's head: the last seq ever given (AUTOINCREMENT keeps it in sqlite_sequence, pruned or not).
EVENTS_HEAD = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'scan_events'), 0)"

# -- claims (rules 1 and 9) -------------------------------------------------------------------------

_CLAIM_SETS = """
    status = 'Running', attempt = attempt + 1, lease_owner = :worker, lease_expires_at = :expires,
    started_at = :now, updated_at = :now,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt + 1, 'worker', :worker, 'started_at', json(:now_json),
        'finished_at', NULL, 'outcome', NULL, 'error', NULL))"""
# The claim order is the index order: one walk of scans_claimable, stopped at LIMIT, no sort.
# RETURNING has no order: ``fair_key`` comes back after COLUMNS so the caller can sort by claim order.
CLAIM = f"""
UPDATE scans SET{_CLAIM_SETS}
WHERE scan_id IN (
    SELECT scan_id FROM scans INDEXED BY scans_claimable WHERE status = 'Accepted' AND available_at <= :now
    ORDER BY priority DESC, fair_key, scan_id LIMIT :limit)
RETURNING {COLUMNS}, fair_key
"""
# The capped claim (``max_per_target``) picks in Python, inside the writer's transaction, then claims
# the picked ids in one UPDATE. Candidates come in claim order, a chunk at a time, from a position
# (priority, fair_key, scan_id): the rest of that priority (a row-value seek), then lower priorities.
# Targets already full are left out here; NULL targets never are.
CLAIM_CANDIDATES = """
SELECT scan_id, priority, fair_key, target_key FROM (
    SELECT * FROM (
        SELECT scan_id, priority, fair_key, target_key FROM scans INDEXED BY scans_claimable
        WHERE status = 'Accepted' AND priority = :priority AND (fair_key, scan_id) > (:fair_key, :scan_id)
            AND available_at <= :now AND (target_key IS NULL OR target_key NOT IN (SELECT value FROM json_each(:full)))
        ORDER BY fair_key, scan_id LIMIT :chunk)
    UNION ALL
    SELECT * FROM (
        SELECT scan_id, priority, fair_key, target_key FROM scans INDEXED BY scans_claimable
        WHERE status = 'Accepted' AND priority < :priority
            AND available_at <= :now AND (target_key IS NULL OR target_key NOT IN (SELECT value FROM json_each(:full)))
        ORDER BY priority DESC, fair_key, scan_id LIMIT :chunk))
LIMIT :chunk
"""
# Every worker's Running scans of the given targets (a JSON array): one range of the partial index each.
RUNNING_BY_TARGET = """
SELECT target_key, count(*) FROM scans INDEXED BY scans_running_by_target
WHERE status = 'Running' AND target_key IS NOT NULL AND target_key IN (SELECT value FROM json_each(:targets))
GROUP BY target_key
"""
CLAIM_IDS = f"""
UPDATE scans SET{_CLAIM_SETS}
WHERE scan_id IN (SELECT value FROM json_each(:ids)) AND +status = 'Accepted'
RETURNING {COLUMNS}, fair_key
"""
# A batch's tenants (a JSON array) with their last fair key and weight (NULL: none yet, no limits row);
# TENANT_CLOCK for the common batch of one tenant (half the cost: no JSON).
TENANT_CLOCK = (
    "SELECT ?1, (SELECT last_key FROM tenant_clocks WHERE tenant = ?1),"
    " (SELECT weight FROM tenant_limits WHERE tenant = ?1)"
)
TENANT_CLOCKS = """
SELECT named.value, clock.last_key, limits.weight FROM json_each(:tenants) AS named
LEFT JOIN tenant_clocks AS clock ON clock.tenant = named.value
LEFT JOIN tenant_limits AS limits ON limits.tenant = named.value
"""
SET_TENANT_CLOCK = (
    "INSERT INTO tenant_clocks (tenant, last_key) VALUES (?, ?)"
    " ON CONFLICT (tenant) DO UPDATE SET last_key = excluded.last_key"
)
# The live queue per tenant, from the counts table (a few rows per tenant), with each tenant's oldest
# Accepted scan: the first entry of its range of scans_accepted_by_tenant.
TENANT_QUEUES = """
SELECT queued.tenant, queued.accepted, queued.running,
    (SELECT created_at FROM scans INDEXED BY scans_accepted_by_tenant
     WHERE tenant = queued.tenant AND status = 'Accepted' ORDER BY created_at LIMIT 1)
FROM (
    SELECT tenant, sum(CASE status WHEN 'Accepted' THEN n ELSE 0 END) AS accepted,
        sum(CASE status WHEN 'Running' THEN n ELSE 0 END) AS running
    FROM scan_counts WHERE status IN ('Accepted', 'Running') GROUP BY tenant) AS queued
WHERE queued.accepted + queued.running > 0
ORDER BY queued.accepted + queued.running DESC, queued.tenant
LIMIT :limit
"""

# -- transitions, rendered from scanq.lifecycle ---------------------------------------------------


def _column(name: str) -> str:
    return f"scans.{name}"


def _sets(transition: RenderedTransition, names: SqlNames) -> str:
    """The SET list that carries ``transition`` out: lease cleared, last history entry closed.

    A column the transition keeps is left out (``x = scans.x`` would cost a write for nothing).
    History times are bound as text (``json(:now_json)``): a bound REAL would keep 15 digits, not 17.
    """
    columns = {
        "status": transition.status,
        "attempt": transition.attempt,
        "error": transition.error,
        "result": transition.result,
        "finished_at": transition.finished_at,
        "available_at": transition.available_at,
    }
    sets = [f"{name} = {value}" for name, value in columns.items() if value != names.column(name)]
    sets += ["lease_owner = NULL", "lease_expires_at = NULL", "updated_at = :now"]
    sets.append(
        f"history = json_set({names.column('history')}, '$[#-1].finished_at', json(:now_json),"
        f" '$[#-1].outcome', {transition.history_outcome}, '$[#-1].error', {transition.history_error})"
    )
    return ",\n    ".join(sets)


# The planner must walk the leases and look each scan up by id: ``+status`` keeps it off the
# status index (with a million finished rows that plan scans every Running row per lease).
_HELD = "WITH held(scan_id, worker, attempt) AS (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(:leases))"
_IS_HELD = (
    "scans.scan_id = held.scan_id AND +scans.status = 'Running'"
    " AND scans.lease_owner = held.worker AND scans.attempt = held.attempt"
)
HEARTBEAT = f"""
{_HELD}
UPDATE scans SET lease_expires_at = :expires, updated_at = :now
FROM held WHERE {_IS_HELD}
RETURNING scans.scan_id, scans.cancel_requested
"""

_FINISH_NAMES = SqlNames(
    now=":now",
    column=_column,
    given_error="held.error",
    given_result="held.result",
    retry_at="held.retry_at",
    outcome="held.outcome",
)
FINISH = f"""
WITH held(scan_id, worker, attempt, outcome, result, error, retry_at) AS (
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6
    FROM json_each(:finishes))
UPDATE scans SET
    {_sets(render_by_outcome(lifecycle.FINISH, _FINISH_NAMES), _FINISH_NAMES)}
FROM held WHERE {_IS_HELD}
RETURNING scans.scan_id
"""

_NAMES = SqlNames(now=":now", column=_column)
RELEASE = f"""
{_HELD}
UPDATE scans SET
    {_sets(render(lifecycle.RELEASE, _NAMES), _NAMES)}
FROM held WHERE {_IS_HELD}
RETURNING scans.status
"""

REQUEUE_EXPIRED = f"""
UPDATE scans SET
    {_sets(render(lifecycle.LEASE_EXPIRED, _NAMES), _NAMES)}
WHERE scan_id IN (
    SELECT scan_id FROM scans INDEXED BY scans_expiring WHERE status = 'Running' AND lease_expires_at <= :now
    ORDER BY lease_expires_at LIMIT :limit)
RETURNING status
"""

# -- cancel, by lifecycle.CANCEL --------------------------------------------------------------------


def _by_cancel_action(action: lifecycle.CancelAction, then: str, otherwise: str) -> str:
    """``CASE status WHEN <each status whose cancel is action> THEN then ELSE otherwise END``."""
    statuses = [status for status, found in lifecycle.CANCEL.items() if found is action]
    branches = " ".join(f"WHEN {literal(status)} THEN {then}" for status in statuses)
    return f"CASE status {branches} ELSE {otherwise} END"


CANCEL = f"""
UPDATE scans SET
    status = {_by_cancel_action(lifecycle.CancelAction.CANCEL_NOW, literal(ScanStatus.CANCELLED), "status")},
    finished_at = {_by_cancel_action(lifecycle.CancelAction.CANCEL_NOW, ":now", "finished_at")},
    cancel_requested = {_by_cancel_action(lifecycle.CancelAction.REQUEST, "1", "cancel_requested")},
    cancelled_by = :by, updated_at = :now
WHERE scan_id = :scan_id AND (:tenant IS NULL OR tenant = :tenant)
    AND status IN ({", ".join(literal(status) for status in lifecycle.CANCELLABLE_STATUSES)})
RETURNING {COLUMNS}
"""

__all__ = [
    "CANCEL",
    "CLAIM",
    "CLAIMABLE_EXISTS",
    "CLAIM_CANDIDATES",
    "CLAIM_IDS",
    "COLUMNS",
    "COUNTS",
    "COUNTS_OF_TENANT",
    "EVENTS_HEAD",
    "FINISH",
    "HEARTBEAT",
    "INSERT_COLUMNS",
    "INSERT_SCAN",
    "LIST_ALL",
    "LIST_BY_STATUS",
    "LIST_BY_STATUS_OF_TENANT",
    "LIST_OF_TENANT",
    "OLDEST_ACCEPTED",
    "OLDEST_ACCEPTED_OF_TENANT",
    "RELEASE",
    "REQUEUE_EXPIRED",
    "RUNNING_BY_TARGET",
    "SELECT_BY_KEY",
    "SELECT_SCAN",
    "SELECT_STATUS",
    "SET_TENANT_CLOCK",
    "TENANT_CLOCK",
    "TENANT_CLOCKS",
    "TENANT_QUEUES",
    "insert_scans",
]
