-- scanq PostgreSQL schema, version 1.
--
-- One table holds every scan: the queue (Accepted), the work in flight (Running) and the
-- archive (Complete / Error / Cancelled). The indexes are chosen so the hot paths only ever
-- touch the small live part of the table, however many finished scans accumulate.

CREATE TABLE scans (
    scan_id          uuid        PRIMARY KEY,
    status           text        NOT NULL
                     CHECK (status IN ('Accepted', 'Running', 'Complete', 'Error', 'Cancelled')),
    target           text,
    scanner          text        NOT NULL,
    options          jsonb       NOT NULL DEFAULT '{}',
    priority         integer     NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    available_at     timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    error            text,
    result           jsonb,
    idempotency_key  text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    history          jsonb       NOT NULL DEFAULT '[]'
) WITH (
    -- Every scan is updated several times (claim, heartbeats, finish). A heartbeat changes no
    -- indexed column, so with free space on the page PostgreSQL writes it as a HOT update: no
    -- new index entries, and the old version is pruned without a vacuum. 75 leaves a quarter
    -- of each page for those updates instead of moving rows to new pages.
    fillfactor = 75,
    -- The default (vacuum once 20% of the table is dead) lets a table of millions of finished
    -- scans collect hundreds of thousands of dead queue tuples before a vacuum, and the claim
    -- index fills with dead entries that every claim has to step over. Vacuum after 1% (or
    -- 1,000 rows on a small table) keeps the live part of the queue compact.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    -- Insert-only stretches (a burst of submissions) still get their visibility map set, so
    -- index-only scans (list by status) stay index-only.
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

-- The claim index: only claimable rows (a partial index), in claim order. A claim reads the
-- first `limit` entries; finished scans are not in it at all, so it stays as small as the backlog.
-- available_at is the last key column so a scan delayed into the future is skipped inside the
-- index (an index condition) instead of by fetching its row.
CREATE INDEX scans_claimable ON scans (priority DESC, scan_id, available_at) WHERE status = 'Accepted';

-- Lists by status, newest first (keyset on scan_id), and the reaper's walk over Running scans.
-- There is deliberately no index on lease_expires_at: it would turn every heartbeat into a
-- non-HOT update. Running scans are few (bounded by worker concurrency), so the reaper scans
-- them through this index.
CREATE INDEX scans_by_status ON scans (status, scan_id);

-- A replayed submission finds its scan; rows without a key cost nothing here.
CREATE UNIQUE INDEX scans_idempotency_key ON scans (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Counts by status without counting the table: each statement that moves scans between
-- statuses appends one small delta row per status it changed (insert-only: no row that two
-- workers would fight over), and `stats` folds the deltas into scan_counts from time to time.
CREATE TABLE scan_counts (
    status text   PRIMARY KEY,
    n      bigint NOT NULL
);
INSERT INTO scan_counts (status, n)
VALUES ('Accepted', 0), ('Running', 0), ('Complete', 0), ('Error', 0), ('Cancelled', 0);

CREATE TABLE scan_count_deltas (
    status text   NOT NULL,
    delta  bigint NOT NULL
) WITH (
    -- Rows live only until the next fold; vacuum the churn often.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);

-- Close the open (last) attempt of a scan's history with how it ended. A plain SQL
-- function: the planner inlines it into the UPDATE that calls it.
CREATE FUNCTION scanq_close_attempt(history jsonb, outcome text, error text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_array_length(history) = 0 THEN history
                ELSE jsonb_set(history, '{-1}', (history -> -1)
                     || jsonb_build_object('finished_at', now(), 'outcome', outcome, 'error', error))
           END
$$;
