-- scanq PostgreSQL schema, version 3: finished scans counted per step, exported and pruned.
--
-- scans_finished holds only finished rows (finished_at is set exactly when a scan becomes
-- Complete, Error or Cancelled), in (status, finished_at) order: GET /stats/throughput counts
-- one range of it per status, and retention deletes from the start of one status's range up
-- to the cutoff, so neither ever reads the scans it keeps. scan_id ends the key so a batch has
-- one order.
--
-- On a large existing table, CREATE INDEX blocks writes while it builds: build it beforehand
-- with CREATE INDEX CONCURRENTLY (the same name and definition) and this migration skips it
-- (docs/postgres.md).
CREATE INDEX IF NOT EXISTS scans_finished ON scans (status, finished_at, scan_id) WHERE finished_at IS NOT NULL;

-- One row per role (retention): who holds it and until when. A holder renews its term; a
-- worker that dies stops renewing and the next one takes the role once the term has ended.
CREATE TABLE scanq_leaders (
    role       text        PRIMARY KEY,
    owner      text        NOT NULL,
    expires_at timestamptz NOT NULL
);
