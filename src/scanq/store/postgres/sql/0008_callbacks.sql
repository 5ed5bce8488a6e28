-- scanq PostgreSQL schema, version 8: one-off callbacks and delivery retention (Store rule 11).
--
-- A scan may carry a callback_url. A tenant's callback endpoint has no url of its own (NULL): its
-- deliveries copy their scan's callback_url into their own url at dispatch (NULL for every other
-- delivery, which goes to its endpoint's url). Nullable columns without a default: no row rewritten.
ALTER TABLE scans ADD COLUMN callback_url text;
ALTER TABLE webhook_endpoints ALTER COLUMN url DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN url text;

-- Deliveries outlive their events: prune_events no longer deletes them, prune_deliveries deletes the
-- ended ones by their last attempt, oldest first, from the start of this range.
DROP INDEX webhook_deliveries_finished;
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';
