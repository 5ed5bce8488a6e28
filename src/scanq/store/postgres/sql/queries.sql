-- Every statement PostgresStore runs, one per "-- name:" section (loaded by statements.py).
--
-- Each {placeholder} is filled when the file is loaded: {work_channel} and {events_channel} are the
-- NOTIFY channels (new claimable work; new scan events), {claim_set} and {claimed_effects} the
-- "-- fragment:" sections below (the parts the three claim statements share),
-- and the statements that carry out a lifecycle transition (finish, release, requeue_expired)
-- take every column value they set from scanq.lifecycle, rendered by scanq.store.sql_rules.
--
-- Each is one round trip and one implicit transaction. Statements that move scans between
-- statuses also append to scan_count_deltas (the counts `stats` reads, one row per tenant and
-- status they changed), insert one scan_events row per scan they moved (Store rule 10: the
-- "evented" CTE, set-based, in the transition's own transaction) and notify {events_channel},
-- and, when they make work claimable now, notify {work_channel}: PostgreSQL delivers identical
-- notifications of one transaction once, so a batch wakes each listener once. Data-modifying
-- CTEs run whether or not the final SELECT reads them; the "notified" CTEs are read by scalar
-- subqueries, which run only when there is a row to return.

-- name: insert_scans
-- Many scans in one statement (a group commit or a batch). A replayed idempotency key is
-- skipped here; the caller reads the stored scan back. Without available_at a scan is due
-- at its creation, but never later than the server's now (the ingest clock may run ahead).
-- options are json, not jsonb: stored as the text msgspec made of what the client sent.
-- An idempotency key is unique per tenant.
--
-- Fair keys (rule 9): a tenant's new scans take consecutive keys in batch order (ord), from
-- max(now, its clock) on in steps of 1 / weight, and its clock becomes the last one: one upsert
-- per tenant per statement, in tenant order (concurrent batches lock the clocks in one order).
-- The upsert locks the clock row, so two statements of one tenant take their keys one after the
-- other and never the same ones. A key stored before this statement is a replay and takes no fair
-- key (the caller sends each key once per batch); a key a concurrent statement stores meanwhile is
-- still skipped by ON CONFLICT, leaving one unused key behind (a gap of 1 / weight, harmless).
WITH fresh AS MATERIALIZED (
    -- The new scans (their place in the batch, ord) and each one's rank among its tenant's.
    SELECT n.ord, n.tenant, row_number() OVER (PARTITION BY n.tenant ORDER BY n.ord) AS nth
    FROM unnest($10::text[], $9::text[]) WITH ORDINALITY AS n(tenant, idempotency_key, ord)
    -- One probe of scans_idempotency_key per key (LATERAL ... LIMIT: never a hash of the whole table).
    LEFT JOIN LATERAL (
        SELECT true AS stored FROM scans AS e
        WHERE n.idempotency_key IS NOT NULL AND e.tenant = n.tenant AND e.idempotency_key = n.idempotency_key
        LIMIT 1
    ) AS replay ON true
    WHERE replay.stored IS NULL
),
shares AS (
    SELECT f.tenant, count(*) AS n, coalesce(min(l.weight), 1) AS weight
    FROM fresh AS f LEFT JOIN tenant_limits AS l ON l.tenant = f.tenant COLLATE "C"
    GROUP BY f.tenant
),
clocks AS (
    INSERT INTO tenant_clocks AS c (tenant, last_key)
    SELECT tenant, extract(epoch FROM now())::float8 + n / weight FROM shares ORDER BY tenant
    ON CONFLICT (tenant) DO UPDATE
    SET last_key = greatest(c.last_key, extract(epoch FROM now())::float8)
                   + (SELECT n / weight FROM shares WHERE shares.tenant = c.tenant)
    RETURNING c.tenant, c.last_key
),
keys AS (
    SELECT f.ord, c.last_key - (sh.n - f.nth) / sh.weight AS fair_key
    FROM fresh AS f JOIN shares AS sh ON sh.tenant = f.tenant JOIN clocks AS c ON c.tenant = f.tenant
),
inserted AS (
    INSERT INTO scans AS s (scan_id, status, target, scanner, options, priority, max_attempts,
                            created_at, updated_at, available_at, idempotency_key,
                            tenant, submitted_by, submitted_by_name, fair_key, target_key, callback_url)
    SELECT n.scan_id, 'Accepted', n.target, n.scanner, n.options, n.priority, n.max_attempts,
           n.created_at, now(), coalesce(n.available_at, least(n.created_at, now())), n.idempotency_key,
           n.tenant, n.submitted_by, n.submitted_by_name, k.fair_key, n.target_key, n.callback_url
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::int[], $6::int[],
                $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::text[])
         WITH ORDINALITY AS n(scan_id, target, scanner, options, priority, max_attempts, created_at, available_at,
                              idempotency_key, tenant, submitted_by, submitted_by_name, target_key, callback_url,
                              ord)
         JOIN keys AS k ON k.ord = n.ord
    ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    -- Only what the server decided: the caller has the rest (decoding whole rows cost more than the insert).
    RETURNING s.scan_id, s.tenant, s.updated_at, s.available_at
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, 'Accepted', count(*) FROM inserted GROUP BY tenant
),
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, 'Accepted', 0, updated_at FROM inserted
),
notified AS (
    SELECT pg_notify({work_channel}, '') FROM inserted WHERE available_at <= now() LIMIT 1
),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM inserted LIMIT 1)
SELECT inserted.scan_id, inserted.updated_at, inserted.available_at,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM events_notified) AS notified
FROM inserted;

-- name: select_by_keys
-- Scans stored under these keys in these tenants (the caller pairs them up): scans_idempotency_key.
SELECT * FROM scans
WHERE tenant = ANY($1::text[]) AND idempotency_key = ANY($2::text[]) AND idempotency_key IS NOT NULL;

-- name: select_scan
SELECT * FROM scans WHERE scan_id = $1::uuid;

-- name: list_all
SELECT * FROM scans ORDER BY scan_id DESC LIMIT $1;

-- name: list_all_after
SELECT * FROM scans WHERE scan_id < $2::uuid ORDER BY scan_id DESC LIMIT $1;

-- One status's scans: the page's ids from scans_by_status (status, scan_id), index-only, then
-- only those rows. Written as one "WHERE status = $2 ORDER BY scan_id DESC LIMIT $1", the planner
-- walks scans_pkey backwards and filters on the status (it expects a common status such as
-- Complete within a few rows), and steps over every newer scan in another status: the newest
-- scans of a live queue are Accepted and Running, 30,000 of them in the status bench at 1M
-- scans, 8 to 16 ms a page against 0.3 ms this way.

-- name: list_status
SELECT * FROM scans
WHERE scan_id = ANY (ARRAY(SELECT scan_id FROM scans WHERE status = $2 ORDER BY scan_id DESC LIMIT $1))
ORDER BY scan_id DESC;

-- name: list_status_after
SELECT * FROM scans
WHERE scan_id = ANY (ARRAY(
    SELECT scan_id FROM scans WHERE status = $2 AND scan_id < $3::uuid ORDER BY scan_id DESC LIMIT $1
))
ORDER BY scan_id DESC;

-- One tenant's scans of the statuses $3 (one, or all five). Each status is a range of
-- scans_by_tenant (tenant, status, scan_id) except Running, which that index leaves out (a
-- claim adds no entry there): the few Running scans are walked in scans_by_status. The newest
-- ids of each range asked for (index-only; a status not in $3 is skipped before it is read),
-- the page's ids picked from those, and only those rows read. The status is spelled out in
-- each range so that every plan, generic ones too, can use the partial index. PostgreSQL does
-- not merge the ranges in order by itself, and walking scans_pkey instead would step over
-- every other tenant's scans: all of the table for a tenant that submitted nothing lately.

-- name: list_tenant
WITH page AS (
    SELECT scan_id FROM (
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Accepted' AND 'Accepted' = ANY ($3::text[])
         ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Running' AND 'Running' = ANY ($3::text[])
         ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Complete' AND 'Complete' = ANY ($3::text[])
         ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Error' AND 'Error' = ANY ($3::text[])
         ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Cancelled' AND 'Cancelled' = ANY ($3::text[])
         ORDER BY scan_id DESC LIMIT $1)
    ) AS newest
    ORDER BY scan_id DESC LIMIT $1
)
SELECT * FROM scans WHERE scan_id = ANY (ARRAY(SELECT scan_id FROM page)) ORDER BY scan_id DESC;

-- name: list_tenant_after
WITH page AS (
    SELECT scan_id FROM (
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Accepted' AND scan_id < $4::uuid
           AND 'Accepted' = ANY ($3::text[]) ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Running' AND scan_id < $4::uuid
           AND 'Running' = ANY ($3::text[]) ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Complete' AND scan_id < $4::uuid
           AND 'Complete' = ANY ($3::text[]) ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Error' AND scan_id < $4::uuid
           AND 'Error' = ANY ($3::text[]) ORDER BY scan_id DESC LIMIT $1)
        UNION ALL
        (SELECT scan_id FROM scans WHERE tenant = $2 AND status = 'Cancelled' AND scan_id < $4::uuid
           AND 'Cancelled' = ANY ($3::text[]) ORDER BY scan_id DESC LIMIT $1)
    ) AS newest
    ORDER BY scan_id DESC LIMIT $1
)
SELECT * FROM scans WHERE scan_id = ANY (ARRAY(SELECT scan_id FROM page)) ORDER BY scan_id DESC;

-- name: stats
-- Counts from the counter tables (summed over tenants), never from scans. The oldest Accepted
-- scan is the least of each tenant's first entry of scans_accepted_by_tenant: the recursive
-- walk jumps from one tenant's first entry to the next tenant's (one index probe per tenant
-- with Accepted scans, however long their backlogs).
WITH RECURSIVE firsts AS (
    (SELECT tenant, created_at FROM scans WHERE status = 'Accepted' ORDER BY tenant, created_at LIMIT 1)
    UNION ALL
    SELECT next.tenant, next.created_at FROM firsts, LATERAL (
        SELECT tenant, created_at FROM scans
        WHERE status = 'Accepted' AND tenant > firsts.tenant
        ORDER BY tenant, created_at LIMIT 1
    ) AS next
)
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
            SELECT status, sum(n) AS n FROM (
                SELECT status, n FROM scan_counts
                UNION ALL SELECT status, delta FROM scan_count_deltas
            ) AS c GROUP BY status
        ) AS t) AS counts,
       (SELECT count(*) FROM scan_count_deltas) AS deltas,
       (SELECT min(created_at) FROM firsts) AS oldest_accepted_at;

-- name: stats_tenant
-- stats of one tenant: its rows of the counter tables (scan_counts by its primary key), and
-- the first entry of scans_accepted_by_tenant.
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
            SELECT status, sum(n) AS n FROM (
                SELECT status, n FROM scan_counts WHERE tenant = $1
                UNION ALL SELECT status, delta FROM scan_count_deltas WHERE tenant = $1
            ) AS c GROUP BY status
        ) AS t) AS counts,
       (SELECT count(*) FROM scan_count_deltas) AS deltas,
       (SELECT created_at FROM scans WHERE tenant = $1 AND status = 'Accepted' ORDER BY created_at LIMIT 1)
           AS oldest_accepted_at;

-- name: fold_counts
-- Fold the deltas into scan_counts. One folder at a time (a try-lock: the others skip); a
-- DELETE racing ours would wait for it and then skip the rows it took. A tenant's first
-- count of a status adds its row.
WITH folding AS (SELECT pg_try_advisory_xact_lock($1) AS locked),
taken AS (DELETE FROM scan_count_deltas WHERE (SELECT locked FROM folding) RETURNING tenant, status, delta),
summed AS (SELECT tenant, status, sum(delta) AS n FROM taken GROUP BY tenant, status)
INSERT INTO scan_counts AS c (tenant, status, n) SELECT tenant, status, n FROM summed
ON CONFLICT (tenant, status) DO UPDATE SET n = c.n + excluded.n;

-- name: tenant_queues
-- The live queue per tenant (rule 9): its Accepted and Running counts from the counter tables, the
-- busiest first (then by name, as Python orders it), with the first entry of its range of
-- scans_accepted_by_tenant (one probe per tenant listed).
WITH live AS (
    SELECT tenant, coalesce(sum(n) FILTER (WHERE status = 'Accepted'), 0)::bigint AS accepted,
           coalesce(sum(n) FILTER (WHERE status = 'Running'), 0)::bigint AS running
    FROM (SELECT tenant, status, n FROM scan_counts WHERE status IN ('Accepted', 'Running')
          UNION ALL
          SELECT tenant, status, delta FROM scan_count_deltas WHERE status IN ('Accepted', 'Running')) AS c
    GROUP BY tenant
),
top AS (
    SELECT tenant, accepted, running FROM live WHERE accepted + running > 0
    ORDER BY accepted + running DESC, tenant COLLATE "C" LIMIT $1
)
SELECT top.tenant, top.accepted, top.running,
       (SELECT created_at FROM scans WHERE tenant = top.tenant AND status = 'Accepted' ORDER BY created_at LIMIT 1)
           AS oldest_accepted_at,
       (SELECT count(*) FROM scan_count_deltas) AS deltas
FROM top
ORDER BY top.accepted + top.running DESC, top.tenant COLLATE "C";

-- fragment: claim_set
-- How every claim statement makes a picked scan Running under lease owner $1 for $3 seconds. The
-- attempt it opens is told by the row (attempt, attempt_worker, started_at), not written into history
-- (migration 9); the end of the attempt writes it there when the row alone cannot tell it.
SET status = 'Running', attempt = s.attempt + 1, lease_owner = $1, attempt_worker = $1,
    lease_expires_at = now() + make_interval(secs => $3), started_at = now(), updated_at = now()

-- fragment: claimed_effects
-- What every claim statement writes beside the scans it made Running (the CTE "claimed"): the count
-- deltas, one Running event per scan, and one notification of the events channel.
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT c.tenant, v.status, v.sign * c.n FROM (SELECT tenant, count(*) AS n FROM claimed GROUP BY tenant) AS c,
           (VALUES ('Accepted', -1), ('Running', 1)) AS v(status, sign)
),
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, 'Running', attempt, updated_at FROM claimed
),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM claimed LIMIT 1)

-- name: claim
-- Walks scans_claimable in claim order (priority, then fair key: rule 9); SKIP LOCKED lets concurrent
-- workers take disjoint rows instead of queueing behind each other's claims. Nothing is skipped for
-- a cap; the scans it makes Running still count against the cap of a capped claim (scans_running_target).
-- RETURNING claimed_columns (statements.py): the row's columns, fair_key included (the caller sorts by it),
-- but history only when it holds an earlier attempt (NULL: none); the caller adds the entry this claim
-- opened from attempt, attempt_worker and started_at (rows.claimed_scan_from_row), so a first claim
-- sends and decodes no jsonb history. The same in claim_untargeted and claim_capped,
-- which also answer these columns first (rows.claimed_scan_from_row reads them by position).
WITH picked AS (
    SELECT scan_id FROM scans
    WHERE status = 'Accepted' AND available_at <= now()
    ORDER BY priority DESC, fair_key, scan_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE scans AS s
    {claim_set}
    FROM picked
    WHERE s.scan_id = picked.scan_id
    RETURNING {claimed_columns}
),
{claimed_effects}
SELECT claimed.*, (SELECT count(*) FROM events_notified) AS notified FROM claimed;

-- name: claim_untargeted
-- The first statement of every capped claim (claim with max_per_target): one walk of scans_claimable
-- as in claim, taking only the leading run of scans without a target, the scans before the first scan
-- of the first $2 claimable ones (in claim order) that has a target_key. One statement: the capped
-- path's second walk, its advisory locks, its counts and its transaction are left out while the head
-- of the queue names no target (noop and mock scans, and any plugin without a politeness key).
--
-- Why it keeps the cap: a scan without a target (target_key NULL) counts against no target's cap and
-- is never held back by one (claim_capped takes every one in its window), so claiming it needs no
-- count and no lock, whoever claims beside it, and no scan with a target is claimed here.
-- Why it keeps claim order: the scans it claims are a prefix of the claimable scans in claim order
-- (less those concurrent claimers hold: SKIP LOCKED, as in every claim), exactly the scans the capped
-- path would take first. The scan with a target that ends the run, and everything after it, is left
-- Accepted (its row lock ends with the statement); the caller goes on with lock_targets and
-- claim_capped for the rest, which walk from the head again and so start at that scan.
-- Answers at least one row: walked (the window read, at most $2), the claimed scans' columns (NULL
-- when none), and led (how many it claimed): led < walked means a scan with a target stopped the run.
WITH window_scans AS MATERIALIZED (
    SELECT scan_id, priority, fair_key, target_key FROM scans
    WHERE status = 'Accepted' AND available_at <= now()
    ORDER BY priority DESC, fair_key, scan_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
head_run AS MATERIALIZED (
    -- count(target_key) counts the scans with a target up to this one in claim order: 0 in the run.
    SELECT scan_id FROM (
        SELECT scan_id, count(target_key) OVER (
            ORDER BY priority DESC, fair_key, scan_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS targeted
        FROM window_scans
    ) AS ranked
    WHERE targeted = 0
),
claimed AS (
    UPDATE scans AS s
    {claim_set}
    FROM head_run
    WHERE s.scan_id = head_run.scan_id AND s.target_key IS NULL
    RETURNING {claimed_columns}
),
{claimed_effects}
SELECT c.*, w.walked, (SELECT count(*) FROM head_run) AS led, (SELECT count(*) FROM events_notified) AS notified
FROM (SELECT count(*) AS walked FROM window_scans) AS w LEFT JOIN claimed AS c ON true;

-- name: lock_targets
-- First statement of a capped claim's transaction (see claim_capped): of the first $2 claimable scans
-- in claim order, leaving out the targets already at the cap $1, the lock stripes of their targets,
-- each try-locked (a transaction-scoped advisory lock in class $3; a stripe is a target's hash mod $4,
-- so a claim holds at most $4 locks). Answers the stripes this transaction now holds; one another
-- claimer holds is left out (its targets wait for a later claim), so nothing ever waits here.
SELECT coalesce(array_agg(stripe) FILTER (WHERE pg_try_advisory_xact_lock($3::int, stripe)), '{}') AS stripes
FROM (
    SELECT DISTINCT ((hashtext(target_key) % $4::int) + $4::int) % $4::int AS stripe
    FROM (
        SELECT target_key FROM scans
        WHERE status = 'Accepted' AND available_at <= now()
          AND (target_key IS NULL OR target_key NOT IN (
                SELECT target_key FROM scans WHERE status = 'Running' AND target_key IS NOT NULL
                GROUP BY target_key HAVING count(*) >= $1::int))
        ORDER BY priority DESC, fair_key, scan_id
        LIMIT $2
    ) AS w
    WHERE target_key IS NOT NULL
    ORDER BY 1
) AS s;

-- name: claim_capped
-- claim(max_per_target = $4) of up to $2 scans, from a window of the first $5 claimable scans; the
-- second statement of the transaction lock_targets began, which holds the stripes $6 (of $7).
--
-- Why it cannot overshoot: a capped claim takes a target's scans only while holding its stripe's
-- advisory lock, from the first statement on until its transaction ends. This statement's snapshot
-- is taken after that lock was granted, so it sees every scan an earlier capped claim of the target
-- made Running (that claim committed before its lock was released), and no other capped claim of the
-- target runs until this transaction commits. The count is of the scans Running in that snapshot
-- (scans_running_target); a finish, release or requeue racing this statement only lowers the true
-- count, so the cap is never exceeded, at worst a slot is left for the next claim.
-- 1. window: the walk of claim, locking its scans (SKIP LOCKED: concurrent claimers take disjoint
--    windows), of the targets whose stripe is held, leaving out the targets full in this snapshot.
-- 2. running: the Running scans of the window's targets, counted.
-- 3. allowed: the scans those counts leave room for (the nth of a target if nth <= cap - running),
--    in claim order, up to $2; claimed: those made Running.
-- The window's other scans stay Accepted (their locks end with the transaction); the caller claims
-- again, with a larger window, when the window was full and it still wants scans.
WITH full_targets AS (
    SELECT target_key FROM scans WHERE status = 'Running' AND target_key IS NOT NULL
    GROUP BY target_key HAVING count(*) >= $4::int
),
window_scans AS MATERIALIZED (
    SELECT scan_id, priority, fair_key, target_key FROM scans
    WHERE status = 'Accepted' AND available_at <= now()
      AND (target_key IS NULL
           OR (((hashtext(target_key) % $7::int) + $7::int) % $7::int = ANY($6::int[])
               AND target_key NOT IN (SELECT target_key FROM full_targets)))
    ORDER BY priority DESC, fair_key, scan_id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
),
running AS (
    SELECT target_key, count(*) AS running FROM scans
    WHERE status = 'Running' AND target_key IS NOT NULL
      AND target_key IN (SELECT target_key FROM window_scans WHERE target_key IS NOT NULL)
    GROUP BY target_key
),
allowed AS MATERIALIZED (
    SELECT scan_id FROM (
        SELECT w.*, coalesce(r.running, 0) AS running,
               row_number() OVER (PARTITION BY w.target_key ORDER BY w.priority DESC, w.fair_key, w.scan_id) AS nth
        FROM window_scans AS w LEFT JOIN running AS r ON r.target_key = w.target_key
    ) AS ranked
    WHERE target_key IS NULL OR nth <= $4::int - running
    ORDER BY priority DESC, fair_key, scan_id
    LIMIT $2
),
claimed AS (
    UPDATE scans AS s
    {claim_set}
    FROM allowed AS a
    WHERE s.scan_id = a.scan_id
    RETURNING {claimed_columns}
),
{claimed_effects}
SELECT c.*, w.walked, (SELECT count(*) FROM events_notified) AS notified
FROM (SELECT count(*) AS walked FROM window_scans) AS w LEFT JOIN claimed AS c ON true;

-- name: heartbeat
-- Fenced: only scans still Running under the same owner and attempt. Changes no indexed
-- column, so it is a HOT update (see the table's fillfactor).
UPDATE scans AS s SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::int[]) AS l(scan_id, worker_id, attempt)
WHERE s.scan_id = l.scan_id AND s.status = 'Running' AND s.lease_owner = l.worker_id AND s.attempt = l.attempt
RETURNING s.scan_id, s.cancel_requested;

-- name: finish
-- Fenced outcomes of many scans at once: lifecycle.FINISH, chosen by each row's outcome (a
-- Retry goes back to Accepted at retry_at). The attempt's history entry is left implied (history
-- and attempt_worker kept: migration 9) when the row tells all of it: the same attempt, finished
-- now, with its status as outcome and its error; otherwise (a Retry, a Complete that reports an
-- error, a row claimed before migration 9) it is written into history and attempt_worker cleared.
WITH done AS (
    UPDATE scans AS s SET
        status = {status}, attempt = {attempt}, error = {error}, result = {result},
        finished_at = {finished_at}, available_at = {available_at},
        history = CASE
            WHEN s.attempt_worker IS NOT NULL AND {attempt} = s.attempt AND {finished_at} = now()
                 AND {history_outcome} = {status} AND {history_error} IS NOT DISTINCT FROM {error}
            THEN s.history
            ELSE scanq_end_attempt(s.history, s.attempt_worker, s.attempt, s.started_at,
                                   {history_outcome}, {history_error})
        END,
        attempt_worker = CASE
            WHEN {attempt} = s.attempt AND {finished_at} = now()
                 AND {history_outcome} = {status} AND {history_error} IS NOT DISTINCT FROM {error}
            THEN s.attempt_worker
        END,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::jsonb[], $6::text[], $7::timestamptz[])
         AS l(scan_id, worker_id, attempt, outcome, result, error, retry_at)
    WHERE s.scan_id = l.scan_id AND s.status = 'Running' AND s.lease_owner = l.worker_id AND s.attempt = l.attempt
    RETURNING s.scan_id, s.tenant, s.status, s.available_at, s.attempt, s.updated_at
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, status, count(*) FROM done GROUP BY tenant, status
    UNION ALL SELECT tenant, 'Running', -count(*) FROM done GROUP BY tenant
),
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, status, attempt, updated_at FROM done
),
notified AS (
    SELECT pg_notify({work_channel}, '') FROM done WHERE status = 'Accepted' AND available_at <= now() LIMIT 1
),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM done LIMIT 1)
SELECT scan_id, (SELECT count(*) FROM notified) + (SELECT count(*) FROM events_notified) AS notified FROM done;

-- name: release
-- Graceful shutdown, lifecycle.RELEASE: back to Accepted at once, and the attempt does not
-- count. A scan whose cancel was requested is Cancelled instead (its attempt ends).
WITH released AS (
    UPDATE scans AS s SET
        status = {status}, attempt = {attempt}, error = {error}, result = {result},
        finished_at = {finished_at}, available_at = {available_at},
        history = scanq_end_attempt(s.history, s.attempt_worker, s.attempt, s.started_at,
                                    {history_outcome}, {history_error}),
        attempt_worker = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM unnest($1::uuid[], $2::text[], $3::int[]) AS l(scan_id, worker_id, attempt)
    WHERE s.scan_id = l.scan_id AND s.status = 'Running' AND s.lease_owner = l.worker_id AND s.attempt = l.attempt
    RETURNING s.scan_id, s.tenant, s.status, s.attempt, s.updated_at
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, status, count(*) FROM released GROUP BY tenant, status
    UNION ALL SELECT tenant, 'Running', -count(*) FROM released GROUP BY tenant
),
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, status, attempt, updated_at FROM released
),
notified AS (SELECT pg_notify({work_channel}, '') FROM released WHERE status = 'Accepted' LIMIT 1),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM released LIMIT 1)
SELECT count(*) AS released,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM events_notified) AS notified
FROM released;

-- name: requeue_expired
-- The reaper, lifecycle.LEASE_EXPIRED. There is no index on lease_expires_at (it would make
-- heartbeats non-HOT): Running scans are few, and scans_by_status walks just them. SKIP LOCKED
-- lets every worker run it at once; a lease renewed meanwhile is re-checked and left alone.
WITH expired AS (
    SELECT scan_id FROM scans
    WHERE status = 'Running' AND lease_expires_at <= now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
requeued AS (
    UPDATE scans AS s SET
        status = {status}, attempt = {attempt}, error = {error}, result = {result},
        finished_at = {finished_at}, available_at = {available_at},
        history = scanq_end_attempt(s.history, s.attempt_worker, s.attempt, s.started_at,
                                    {history_outcome}, {history_error}),
        attempt_worker = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM expired
    WHERE s.scan_id = expired.scan_id
    RETURNING s.scan_id, s.tenant, s.status, s.attempt, s.updated_at
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, status, count(*) FROM requeued GROUP BY tenant, status
    UNION ALL SELECT tenant, 'Running', -count(*) FROM requeued GROUP BY tenant
),
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, status, attempt, updated_at FROM requeued
),
notified AS (SELECT pg_notify({work_channel}, '') FROM requeued WHERE status = 'Accepted' LIMIT 1),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM requeued LIMIT 1)
SELECT count(*) AS requeued,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM events_notified) AS notified
FROM requeued;

-- name: cancel
-- Accepted: Cancelled at once. Running: flagged; the holding worker learns it from its next
-- heartbeat and stops the scan. Either way $3/$4 (the token, NULL without one) is recorded as
-- who cancelled. Terminal, unknown or another tenant's than $2 (NULL: any): no row, nothing
-- written (the caller tells which).
WITH target AS (
    SELECT scan_id, status FROM scans
    WHERE scan_id = $1::uuid AND status IN ('Accepted', 'Running') AND ($2::text IS NULL OR tenant = $2::text)
    FOR UPDATE
),
cancelled AS (
    UPDATE scans AS s SET
        status = CASE WHEN target.status = 'Accepted' THEN 'Cancelled' ELSE s.status END,
        finished_at = CASE WHEN target.status = 'Accepted' THEN now() ELSE s.finished_at END,
        cancel_requested = s.cancel_requested OR target.status = 'Running',
        cancelled_by = $3::text, cancelled_by_name = $4::text,
        updated_at = now()
    FROM target
    WHERE s.scan_id = target.scan_id
    RETURNING s.*
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT cancelled.tenant, v.status, v.delta
    FROM cancelled, (VALUES ('Accepted', -1), ('Cancelled', 1)) AS v(status, delta)
    WHERE cancelled.status = 'Cancelled'
),
-- A cancel request on a Running scan changes no status: no event.
evented AS (
    INSERT INTO scan_events (scan_id, tenant, status, attempt, at)
    SELECT scan_id, tenant, status, attempt, updated_at FROM cancelled WHERE status = 'Cancelled'
),
events_notified AS (SELECT pg_notify({events_channel}, '') FROM cancelled WHERE status = 'Cancelled' LIMIT 1)
SELECT cancelled.*, (SELECT count(*) FROM events_notified) AS notified FROM cancelled;

-- name: durability_settings
SELECT current_setting('synchronous_commit') AS sync, current_setting('fsync') AS fsync;

-- name: has_claimable
-- Asked once LISTEN is (re-)established: was work queued while nobody listened?
SELECT EXISTS (SELECT 1 FROM scans WHERE status = 'Accepted' AND available_at <= now());

-- Finished scans: throughput counts, export and retention (store/postgres/finished.py).

-- name: finished_counts
-- Scans finished per step and status: one range of scans_finished per status (index-only once
-- the visibility map is set), never the table.
SELECT floor(extract(epoch FROM finished_at - $1::timestamptz) / $3::float8)::int AS step, status, count(*) AS n
FROM scans
WHERE status IN ('Complete', 'Error', 'Cancelled') AND finished_at >= $1::timestamptz AND finished_at < $2::timestamptz
GROUP BY 1, 2;

-- name: finished_counts_tenant
-- The same for one tenant: the same ranges of scans_finished, each row's tenant read from the
-- table (the cost is still bounded by the window, not the table).
SELECT floor(extract(epoch FROM finished_at - $1::timestamptz) / $3::float8)::int AS step, status, count(*) AS n
FROM scans
WHERE status IN ('Complete', 'Error', 'Cancelled') AND finished_at >= $1::timestamptz AND finished_at < $2::timestamptz
  AND tenant = $4::text
GROUP BY 1, 2;

-- name: export_scans
-- One page of an export, in key order. An open bound is NULL, and so is $6, every tenant.
SELECT * FROM scans
WHERE scan_id > $1::uuid AND status = ANY($2::text[])
  AND finished_at >= coalesce($3::timestamptz, '-infinity') AND finished_at < coalesce($4::timestamptz, 'infinity')
  AND ($6::text IS NULL OR tenant = $6::text)
ORDER BY scan_id
LIMIT $5;

-- name: prune_batch
-- The next batch of retention: the start of one status's range of scans_finished, up to the cutoff.
SELECT * FROM scans WHERE status = $1::text AND finished_at < $2::timestamptz ORDER BY finished_at, scan_id LIMIT $3;

-- name: prune_batch_tenant
-- The same for one tenant: its rows picked out of that range.
SELECT * FROM scans
WHERE status = $1::text AND finished_at < $2::timestamptz AND tenant = $4::text
ORDER BY finished_at, scan_id LIMIT $3;

-- name: prune_named
-- The same rule for a batch named by id (an archived one), looked up by key; of tenant $5 (NULL: any).
SELECT * FROM scans
WHERE scan_id = ANY($4::uuid[]) AND status = $1::text AND finished_at < $2::timestamptz
  AND ($5::text IS NULL OR tenant = $5::text)
ORDER BY finished_at, scan_id LIMIT $3;

-- name: prune
-- Delete a batch while $4 holds the retention role: the role's row is locked FOR SHARE, so it
-- cannot change hands before this statement commits. The count deltas keep stats exact.
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $5::text AND owner = $4::text AND expires_at > now() FOR SHARE
),
batch AS (
    SELECT scan_id FROM scans
    WHERE status = $1::text AND finished_at < $2::timestamptz AND EXISTS (SELECT 1 FROM holder)
    ORDER BY finished_at, scan_id
    LIMIT $3
),
deleted AS (
    -- By key: a join with the batch would let the planner hash it against a scan of the whole table.
    DELETE FROM scans AS s WHERE s.scan_id = ANY (ARRAY(SELECT scan_id FROM batch)) AND s.status = $1::text
    RETURNING s.*
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, $1::text, -count(*) FROM deleted GROUP BY tenant
)
SELECT * FROM deleted;

-- name: prune_tenant
-- prune of one tenant's scans ($6): its rows picked out of the same range.
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $5::text AND owner = $4::text AND expires_at > now() FOR SHARE
),
batch AS (
    SELECT scan_id FROM scans
    WHERE status = $1::text AND finished_at < $2::timestamptz AND tenant = $6::text AND EXISTS (SELECT 1 FROM holder)
    ORDER BY finished_at, scan_id
    LIMIT $3
),
deleted AS (
    DELETE FROM scans AS s WHERE s.scan_id = ANY (ARRAY(SELECT scan_id FROM batch)) AND s.status = $1::text
    RETURNING s.*
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, $1::text, -count(*) FROM deleted GROUP BY tenant
)
SELECT * FROM deleted;

-- name: prune_named_delete
-- prune for a batch named by id (written to the archive first); of tenant $7 (NULL: any).
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $5::text AND owner = $4::text AND expires_at > now() FOR SHARE
),
batch AS (
    SELECT scan_id FROM scans
    WHERE scan_id = ANY($6::uuid[]) AND status = $1::text AND finished_at < $2::timestamptz
      AND ($7::text IS NULL OR tenant = $7::text) AND EXISTS (SELECT 1 FROM holder)
    ORDER BY finished_at, scan_id
    LIMIT $3
),
deleted AS (
    -- By key: a join with the batch would let the planner hash it against a scan of the whole table.
    DELETE FROM scans AS s WHERE s.scan_id = ANY (ARRAY(SELECT scan_id FROM batch)) AND s.status = $1::text
    RETURNING s.*
),
counted AS (
    INSERT INTO scan_count_deltas (tenant, status, delta)
    SELECT tenant, $1::text, -count(*) FROM deleted GROUP BY tenant
)
SELECT * FROM deleted;

-- name: lead
-- Take the role when it is free or its term has ended, or renew our own term; no row: another holds it.
INSERT INTO scanq_leaders AS l (role, owner, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (role) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE l.owner = excluded.owner OR l.expires_at <= now()
RETURNING owner;

-- name: resign
DELETE FROM scanq_leaders WHERE role = $1 AND owner = $2;

-- API tokens and tenant limits (store/postgres/accounts.py).

-- name: insert_token
INSERT INTO api_tokens (token_id, tenant, name, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at)
VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8, $9);

-- name: find_token
-- The hot lookup of every authenticated request: the unique index on secret_hash.
SELECT * FROM api_tokens WHERE secret_hash = $1;

-- name: list_tokens
SELECT * FROM api_tokens ORDER BY created_at, token_id;

-- name: list_tenant_tokens
SELECT * FROM api_tokens WHERE tenant = $1 ORDER BY created_at, token_id;

-- name: revoke_token
-- The server's now, unless the token was revoked already (that time is kept).
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = $1 RETURNING *;

-- name: touch_tokens
-- Many tokens in one statement; a time never moves backwards, an unknown id matches nothing.
UPDATE api_tokens AS t SET last_used_at = u.used_at
FROM unnest($1::text[], $2::timestamptz[]) AS u(token_id, used_at)
WHERE t.token_id = u.token_id AND (t.last_used_at IS NULL OR t.last_used_at < u.used_at);

-- name: set_tenant_limits
INSERT INTO tenant_limits AS l (tenant, max_queued, rate_per_s, weight) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant) DO UPDATE
SET max_queued = excluded.max_queued, rate_per_s = excluded.rate_per_s, weight = excluded.weight;

-- name: get_tenant_limits
SELECT * FROM tenant_limits WHERE tenant = $1;

-- name: list_tenant_limits
SELECT * FROM tenant_limits ORDER BY tenant;

-- Scan events (Store rule 10) and webhooks (rule 11): store/postgres/events.py, webhooks.py.
--
-- The log's order is (txid, seq) (see 0007_events_webhooks.sql). A reader takes only settled
-- events, txid below its snapshot's xmin: every transaction below xmin has ended, so no event
-- can still appear before the last one returned. An open transaction holds back its own events
-- and every event ordered after them (a larger txid) until it ends, never for longer.

-- name: read_events
-- Settled events after ($1, $2), in log order: a range of the primary key; of tenant $4 and
-- statuses $5 when given (NULL: any), filtered along the walk.
SELECT txid, seq, scan_id, tenant, status, attempt, at FROM scan_events
WHERE (txid, seq) > ($1::xid8, $2::bigint)
  AND txid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
  AND ($4::text IS NULL OR tenant = $4::text)
  AND ($5::text[] IS NULL OR status = ANY ($5::text[]))
ORDER BY txid, seq
LIMIT $3;

-- name: read_scan_events
-- The same for one scan ($6): a range of scan_events_by_scan.
SELECT txid, seq, scan_id, tenant, status, attempt, at FROM scan_events
WHERE scan_id = $6::uuid AND (txid, seq) > ($1::xid8, $2::bigint)
  AND txid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
  AND ($4::text IS NULL OR tenant = $4::text)
  AND ($5::text[] IS NULL OR status = ANY ($5::text[]))
ORDER BY txid, seq
LIMIT $3;

-- name: events_head
-- Every settled event has a txid below xmin; every event settling later has xmin or more.
SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin;

-- name: prune_events
-- While $2 holds the retention role $3 (its row locked FOR SHARE, as prune does): of the first $4
-- events of the log, those the dispatch cursor has passed, the ones older than $1; a range of the
-- primary key (the window's last key bounds it), never a walk past the window. Deliveries carry
-- their event and stay (prune_deliveries).
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $3::text AND owner = $2::text AND expires_at > now() FOR SHARE
),
passed AS (
    SELECT txid, seq FROM webhook_cursor WHERE EXISTS (SELECT 1 FROM holder)
),
window_end AS (
    SELECT txid, seq FROM (
        SELECT e.txid, e.seq FROM scan_events AS e
        WHERE (e.txid, e.seq) <= (SELECT txid, seq FROM passed)
        ORDER BY e.txid, e.seq
        LIMIT $4
    ) AS w
    ORDER BY txid DESC, seq DESC
    LIMIT 1
),
deleted AS (
    DELETE FROM scan_events AS e
    WHERE (e.txid, e.seq) <= (SELECT txid, seq FROM window_end) AND e.at < $1::timestamptz
    RETURNING 1
)
SELECT (SELECT count(*) FROM deleted) AS events;

-- name: prune_deliveries
-- While $2 holds the retention role $3: up to $4 ended deliveries whose last attempt is before $1,
-- oldest first, from the start of webhook_deliveries_ended; never a pending one (one retried
-- meanwhile is left: the status is checked again on the row deleted).
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $3::text AND owner = $2::text AND expires_at > now() FOR SHARE
),
deleted AS (
    DELETE FROM webhook_deliveries AS d
    WHERE d.ctid = ANY (ARRAY(
        SELECT f.ctid FROM webhook_deliveries AS f
        WHERE f.status <> 'pending' AND f.last_attempt_at < $1::timestamptz AND EXISTS (SELECT 1 FROM holder)
        ORDER BY f.last_attempt_at
        LIMIT $4
    )) AND d.status <> 'pending'
    RETURNING 1
)
SELECT count(*) AS deliveries FROM deleted;

-- name: insert_endpoint
INSERT INTO webhook_endpoints (endpoint_id, tenant, url, event_types, description, secret, previous_secret,
                               previous_secret_until, created_at, updated_at)
VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8, $9, $10);

-- name: select_endpoint
-- One endpoint of tenant $2 (NULL: any).
SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::text IS NULL OR tenant = $2::text);

-- name: list_endpoints
SELECT * FROM webhook_endpoints ORDER BY created_at, endpoint_id;

-- name: list_tenant_endpoints
SELECT * FROM webhook_endpoints WHERE tenant = $1 ORDER BY created_at, endpoint_id;

-- name: delete_endpoint
-- Its deliveries go with it (ON DELETE CASCADE).
DELETE FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::text IS NULL OR tenant = $2::text) RETURNING endpoint_id;

-- name: rotate_endpoint_secret
UPDATE webhook_endpoints
SET previous_secret = secret, previous_secret_until = $4::timestamptz, secret = $3::text, updated_at = now()
WHERE endpoint_id = $1 AND ($2::text IS NULL OR tenant = $2::text)
RETURNING *;

-- name: dispatch_events
-- While $1 holds the webhook role $2 (its row locked FOR SHARE: the role cannot change hands
-- before this commits, so the next holder reads the cursor this statement moved): the first $3
-- settled events after the cursor, one pending delivery per endpoint of the event's tenant that
-- subscribes to its type (status $4[i] is event type $5[i]) and existed when it happened, at most
-- one per (endpoint, event) (ON CONFLICT), and the cursor moved to the last event read. A callback
-- endpoint (url NULL) only for the events of a scan that has a callback_url, copied into the
-- delivery's url. No endpoint: the events are read and the cursor moved, nothing else; no event:
-- nothing written.
WITH holder AS (
    SELECT 1 FROM scanq_leaders WHERE role = $2::text AND owner = $1::text AND expires_at > now() FOR SHARE
),
batch AS MATERIALIZED (
    SELECT e.txid, e.seq, e.scan_id, e.tenant, e.status, e.attempt, e.at FROM scan_events AS e
    WHERE (e.txid, e.seq) > (SELECT txid, seq FROM webhook_cursor)
      AND e.txid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
      AND EXISTS (SELECT 1 FROM holder)
    ORDER BY e.txid, e.seq
    LIMIT $3
),
owed AS (
    -- FOR KEY SHARE, as the foreign key's check would: an endpoint deleted meanwhile is left out
    -- (instead of failing the insert), and one deleted after waits for this write, then takes its
    -- new deliveries with it. A callback endpoint (no url) is owed only the events of a scan with a
    -- callback_url, which its delivery copies: one probe of scans_pkey per such pair (a subplan in a
    -- CASE branch, run only for an endpoint without a url), none owed for a scan gone.
    SELECT p.endpoint_id, p.url AS endpoint_url, b.txid, b.seq, b.scan_id, b.tenant, b.status, b.attempt, b.at,
           CASE WHEN p.url IS NULL THEN (SELECT s.callback_url FROM scans AS s WHERE s.scan_id = b.scan_id) END
               AS callback_url
    FROM batch AS b
    JOIN unnest($4::text[], $5::text[]) AS t(status, event_type) ON t.status = b.status
    JOIN webhook_endpoints AS p
      ON p.tenant = b.tenant COLLATE "C" AND t.event_type = ANY (p.event_types) AND p.created_at <= b.at
    FOR KEY SHARE OF p
),
inserted AS (
    INSERT INTO webhook_deliveries (endpoint_id, event_txid, event_seq, scan_id, tenant, event_status, event_attempt,
                                    event_at, status, attempts, created_at, next_attempt_at, url)
    SELECT endpoint_id, txid, seq, scan_id, tenant, status, attempt, at, 'pending', 0, now(), now(), callback_url
    FROM owed
    WHERE endpoint_url IS NOT NULL OR callback_url IS NOT NULL
    ORDER BY endpoint_id, txid, seq
    ON CONFLICT DO NOTHING
    RETURNING 1
),
moved AS (
    UPDATE webhook_cursor AS c SET txid = last.txid, seq = last.seq
    FROM (SELECT txid, seq FROM batch ORDER BY txid DESC, seq DESC LIMIT 1) AS last
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM inserted) AS deliveries,
       (SELECT count(*) FROM moved) AS moved;

-- name: claim_deliveries
-- Due pending deliveries without a live lease, earliest first (webhook_deliveries_due; the few
-- leased ones in flight are stepped over), leased to $1 for $3 s. SKIP LOCKED: concurrent
-- claimers take disjoint rows. Each with its endpoint (the endpoint's columns renamed).
WITH picked AS (
    SELECT endpoint_id, event_txid, event_seq FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now() AND (lease_expires_at IS NULL OR lease_expires_at <= now())
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE webhook_deliveries AS d SET lease_owner = $1::text, lease_expires_at = now() + make_interval(secs => $3)
    FROM picked AS p
    WHERE d.endpoint_id = p.endpoint_id AND d.event_txid = p.event_txid AND d.event_seq = p.event_seq
    RETURNING d.*
)
SELECT c.*, e.tenant AS endpoint_tenant, e.url AS endpoint_url, e.event_types, e.description, e.secret, e.previous_secret,
       e.previous_secret_until, e.created_at AS endpoint_created_at, e.updated_at AS endpoint_updated_at
FROM claimed AS c JOIN webhook_endpoints AS e ON e.endpoint_id = c.endpoint_id;

-- name: record_deliveries
-- Fenced outcomes of many deliveries at once: only a pending delivery whose lease the reporting
-- worker holds (of several results for one delivery, by different workers, only that worker's
-- matches). A retry is due at $8 but never before now.
UPDATE webhook_deliveries AS d SET
    attempts = d.attempts + 1, last_attempt_at = now(), last_status_code = r.status_code, last_error = r.error,
    lease_owner = NULL, lease_expires_at = NULL,
    status = CASE r.outcome WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed' ELSE 'pending' END,
    delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() ELSE d.delivered_at END,
    next_attempt_at = CASE WHEN r.outcome = 'retry' THEN greatest(coalesce(r.retry_at, now()), now())
                           ELSE d.next_attempt_at END
FROM unnest($1::text[], $2::xid8[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[], $8::timestamptz[])
     AS r(endpoint_id, txid, seq, worker_id, outcome, status_code, error, retry_at)
WHERE d.endpoint_id = r.endpoint_id AND d.event_txid = r.txid AND d.event_seq = r.seq
  AND d.status = 'pending' AND d.lease_owner = r.worker_id
RETURNING d.endpoint_id, d.event_txid, d.event_seq, r.worker_id;

-- name: list_deliveries
-- The endpoint ($1, of tenant $2, NULL: any) and its deliveries newest event first (the primary key
-- backwards), of status $3 (NULL: any): one row with NULL delivery columns when it has none, no
-- row when there is no such endpoint.
SELECT d.* FROM webhook_endpoints AS p
LEFT JOIN LATERAL (
    SELECT * FROM webhook_deliveries
    WHERE endpoint_id = p.endpoint_id AND ($3::text IS NULL OR status = $3::text)
    ORDER BY event_txid DESC, event_seq DESC
    LIMIT $4
) AS d ON true
WHERE p.endpoint_id = $1 AND ($2::text IS NULL OR p.tenant = $2::text);

-- name: retry_delivery
-- Pending and due now again, the lease cleared, attempts kept. No row: no such endpoint; a row
-- with NULL delivery columns: no such delivery.
WITH endpoint AS (
    SELECT endpoint_id FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::text IS NULL OR tenant = $2::text)
),
retried AS (
    UPDATE webhook_deliveries AS d
    SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL
    WHERE d.endpoint_id = (SELECT endpoint_id FROM endpoint) AND d.event_txid = $3::xid8 AND d.event_seq = $4::bigint
    RETURNING d.*
)
SELECT r.* FROM endpoint LEFT JOIN retried AS r ON true;
