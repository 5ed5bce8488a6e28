-- scanq PostgreSQL schema, version 7: the scan event log (Store rule 10) and webhooks (rule 11).
--
-- scan_events is the outbox: every statement that changes a scan's status inserts one row per
-- scan it changed, in the same statement. Its order is (txid, seq): seq (a sequence) is taken in
-- insert order, not commit order, so it alone would let a reader pass an event whose transaction
-- has not committed yet and never see it. txid, the inserting transaction's id, makes the order
-- safe: a reader returns only rows with txid below its snapshot's xmin (the oldest transaction
-- still running), which are all committed and final, and every row inserted later has a larger
-- txid than any of them. The primary key is that order; event_id is "<txid>.<seq>".
-- Insert-only between prunes: the insert-triggered vacuum keeps the visibility map set.
CREATE TABLE scan_events (
    seq     bigserial,
    txid    xid8        NOT NULL DEFAULT pg_current_xact_id(),
    scan_id uuid        NOT NULL,
    tenant  text        NOT NULL,
    status  text        NOT NULL,
    attempt integer     NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (txid, seq)
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_scale_factor = 0.05);

-- One scan's events in log order (the stream of GET /scans/{id}/events replays them from the start).
CREATE INDEX scan_events_by_scan ON scan_events (scan_id, txid, seq);

-- A tenant's webhook receivers. event_types: sorted EventType values ('scan.completed', ...).
-- Names compare by code point (COLLATE "C"), as Python compares them.
CREATE TABLE webhook_endpoints (
    endpoint_id           text        COLLATE "C" PRIMARY KEY,
    tenant                text        COLLATE "C" NOT NULL,
    url                   text        NOT NULL,
    event_types           text[]      NOT NULL,
    description           text,
    secret                text        NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
-- list_endpoints of one tenant oldest first, and the endpoints dispatch matches an event's tenant with.
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant, created_at, endpoint_id);

-- One event owed to one endpoint, with a copy of the event (pruning events never breaks a
-- delivery). The primary key is (endpoint, event in log order): at most one delivery per pair,
-- and an endpoint's deliveries newest event first by walking it backwards. Deleting an endpoint
-- deletes its deliveries (the foreign key also keeps a dispatch racing the delete from leaving
-- a delivery to nowhere behind).
CREATE TABLE webhook_deliveries (
    endpoint_id      text        COLLATE "C" NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    event_txid       xid8        NOT NULL,
    event_seq        bigint      NOT NULL,
    scan_id          uuid        NOT NULL,
    tenant           text        NOT NULL,
    event_status     text        NOT NULL,
    event_attempt    integer     NOT NULL,
    event_at         timestamptz NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    PRIMARY KEY (endpoint_id, event_txid, event_seq)
) WITH (fillfactor = 80);  -- room for the HOT updates of a claim (lease columns are not indexed)

-- claim_deliveries walks the due pending deliveries, earliest first; only pending ones are in it.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- prune_events deletes the finished deliveries of old events: the start of this range.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (event_at) WHERE status <> 'pending';

-- The dispatch cursor: the last event dispatch_events passed, one row, (0, 0) before every event.
-- Moved by the holder of the webhook role only, in the statement that inserts the deliveries.
CREATE TABLE webhook_cursor (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    txid xid8    NOT NULL,
    seq  bigint  NOT NULL
);
INSERT INTO webhook_cursor (one, txid, seq) VALUES (true, '0', 0);
