-- scanq PostgreSQL schema, version 6: the per-target cap counts Running scans through an index.
--
-- Migration 5 kept a counter row per target (target_slots), raised by every claim and lowered by
-- every finish, release and requeue: two row versions of a small, hot table per scan, and on a busy
-- queue (autovacuum behind or off) a claim read ever longer chains of dead versions. A capped claim
-- now counts the Running scans of its targets in this partial index (it holds only Running scans
-- that name a target: about the scans in flight), serialised per target by transaction-scoped
-- advisory locks (see claim_capped in queries.sql); finish, release and requeue do nothing extra.
-- Building it reads the table once; the index itself holds only the Running scans.

CREATE INDEX IF NOT EXISTS scans_running_target ON scans (target_key)
    WHERE status = 'Running' AND target_key IS NOT NULL;

DROP TABLE IF EXISTS target_slots;
