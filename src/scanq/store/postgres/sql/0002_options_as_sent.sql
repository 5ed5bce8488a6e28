-- scanq PostgreSQL schema, version 2: options are kept as the text the client sent.
--
-- jsonb normalises numbers (1.5e308 becomes a 309-digit integer, -0.0 becomes 0.0) and
-- sorts object keys, so options came back other than they were sent and an identical
-- Idempotency-Key replay was refused as a different request. json stores the text as
-- given (PostgreSQL still checks it is valid JSON). scanq never queries inside options.
-- Rows written before this migration keep the normalised form jsonb gave them.
--
-- Changing the type rewrites the table under an ACCESS EXCLUSIVE lock: on a large
-- table, apply it in a maintenance window (see docs/postgres.md).

ALTER TABLE scans
    ALTER COLUMN options DROP DEFAULT,
    ALTER COLUMN options TYPE json USING options::json,
    ALTER COLUMN options SET DEFAULT '{}';
