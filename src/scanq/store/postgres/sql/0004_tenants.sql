-- scanq PostgreSQL schema, version 4: tenants, who submitted and cancelled a scan, API tokens
-- and tenant limits (Store rules 7 and 8).
--
-- Every scan written before this migration belongs to the tenant 'default'. ADD COLUMN with
-- a constant DEFAULT only records the default in the catalog (PostgreSQL 11 and later): the
-- table is not rewritten, however many scans it holds. submitted_by / cancelled_by are the
-- public id of the API token that did it, *_name its name then (NULL: authentication off).
--
-- The three indexes below read the whole table while they build, and block writes meanwhile.
-- On a large table, prepare them beforehand without blocking: add the tenant column as below
-- (instant), then CREATE UNIQUE INDEX CONCURRENTLY scans_tenant_idempotency_key, and CREATE
-- INDEX CONCURRENTLY scans_by_tenant and scans_accepted_by_tenant, with the definitions below.
-- This migration then skips what exists and only swaps the first in for the old key index.

ALTER TABLE scans
    ADD COLUMN IF NOT EXISTS tenant            text NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS submitted_by      text,
    ADD COLUMN IF NOT EXISTS submitted_by_name text,
    ADD COLUMN IF NOT EXISTS cancelled_by      text,
    ADD COLUMN IF NOT EXISTS cancelled_by_name text;

-- An idempotency key is unique within its tenant: the same key in two tenants makes two scans.
-- The index keeps its name (and stays partial: rows without a key cost nothing here).
DO $$
BEGIN
    IF to_regclass('scans_tenant_idempotency_key') IS NULL THEN
        CREATE UNIQUE INDEX scans_tenant_idempotency_key ON scans (tenant, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
    END IF;
    DROP INDEX scans_idempotency_key;
    ALTER INDEX scans_tenant_idempotency_key RENAME TO scans_idempotency_key;
END
$$;

-- One tenant's scans newest first, of one status (a range of the index) or of any (the ranges
-- merged): a tenant that submitted nothing lately is listed as fast as a busy one. Running
-- scans are left out: they are few (as many as the workers run), listed from scans_by_status,
-- and so a claim, whose new row version is Running, adds no entry here. An insert adds one,
-- and so does every other change of status (a finish, a cancel, a retry).
CREATE INDEX IF NOT EXISTS scans_by_tenant ON scans (tenant, status, scan_id) WHERE status <> 'Running';

-- A tenant's oldest Accepted scan (stats) is the first entry of its range; every tenant's, the
-- least of those first entries (one probe per tenant with a backlog). Only the queue is in it,
-- so it stays as small as the backlog: an insert (or a scan made Accepted again) adds an entry,
-- and a claim's new row version is not in it (the claim changes status, which already makes
-- that update non-HOT); heartbeats never touch it.
CREATE INDEX IF NOT EXISTS scans_accepted_by_tenant ON scans (tenant, created_at) WHERE status = 'Accepted';

-- Counts by (tenant, status), still kept by the deltas each status-changing statement appends
-- and folded into scan_counts (now one row per tenant and status, added by the fold when a
-- tenant first appears). What was counted so far is all of tenant 'default'.
ALTER TABLE scan_count_deltas ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE scan_counts ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE scan_counts DROP CONSTRAINT scan_counts_pkey;
ALTER TABLE scan_counts ADD PRIMARY KEY (tenant, status);

-- API tokens: never the secret, only its SHA-256 (hex), unique; find_token looks it up by it.
-- Names compare as Python compares them (by code point, COLLATE "C"): lists come out in one order
-- on every server, whatever its locale.
CREATE TABLE api_tokens (
    token_id     text        COLLATE "C" PRIMARY KEY,
    tenant       text        COLLATE "C" NOT NULL,
    name         text,
    scopes       text[]      NOT NULL,  -- sorted
    secret_hash  text        NOT NULL CONSTRAINT api_tokens_secret_hash_key UNIQUE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
-- list_tokens of one tenant, oldest first.
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, created_at, token_id);

-- A tenant's quotas (NULL: unlimited) and its share of the workers; no row: the defaults.
CREATE TABLE tenant_limits (
    tenant     text             COLLATE "C" PRIMARY KEY,
    max_queued bigint,
    rate_per_s double precision,
    weight     double precision NOT NULL DEFAULT 1
);
