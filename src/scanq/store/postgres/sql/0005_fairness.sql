-- scanq PostgreSQL schema, version 5: fair share across tenants and politeness per target (Store rule 9).
--
-- fair_key is a scan's virtual start time in weighted fair queueing (epoch seconds): the insert sets it
-- to max(now, the tenant's clock) + 1 / weight and moves the clock (tenant_clocks) in the same
-- statement, and the claim walks (priority DESC, fair_key, scan_id). A scan made Accepted again keeps
-- its key. ADD COLUMN with a constant DEFAULT is instant (no rewrite); the Accepted and Running scans
-- then get their created_at as key, so the queue keeps the order it had (finished scans never need
-- one). target_key is the host the politeness cap counts (NULL: never capped).
--
-- The claim index is rebuilt with fair_key; on a large backlog that blocks writes while it builds.
-- Build it beforehand with CREATE INDEX CONCURRENTLY scans_claimable_fair (the definition below,
-- after adding the two columns as below) and this migration only swaps it in for the old one.

ALTER TABLE scans
    ADD COLUMN IF NOT EXISTS fair_key   double precision NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS target_key text;

UPDATE scans SET fair_key = extract(epoch FROM created_at)
WHERE status IN ('Accepted', 'Running') AND fair_key = 0;

DO $$
BEGIN
    IF to_regclass('scans_claimable_fair') IS NULL THEN
        CREATE INDEX scans_claimable_fair ON scans (priority DESC, fair_key, scan_id, available_at)
            WHERE status = 'Accepted';
    END IF;
    DROP INDEX scans_claimable;
    ALTER INDEX scans_claimable_fair RENAME TO scans_claimable;
END
$$;

-- Each tenant's last fair key (its virtual clock), shared by every process on the database. The
-- insert upserts one row per tenant per statement, which also serialises concurrent inserts of
-- one tenant on that row: their keys never overlap.
CREATE TABLE tenant_clocks (
    tenant   text             PRIMARY KEY,
    last_key double precision NOT NULL
) WITH (fillfactor = 50);  -- room for HOT updates: the key is the only index

-- Scans of each target_key Running right now, kept by the statements that move scans into Running
-- (claim: +) and out of it (finish, release, requeue_expired: -). A target without a row has no scan
-- Running; the reaper deletes the rows that came back to zero. A capped claim locks the rows of the
-- targets it takes (FOR UPDATE SKIP LOCKED), so two claimers never fill the same slot.
CREATE TABLE target_slots (
    target_key text    PRIMARY KEY,
    running    integer NOT NULL
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);
