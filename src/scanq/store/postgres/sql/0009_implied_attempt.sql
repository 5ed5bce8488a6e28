-- scanq PostgreSQL schema, version 9: a scan's current attempt lives in its columns, not in history.
--
-- A claim wrote a history entry (jsonb built and appended), its finish rewrote it: some 15% of
-- the server's work per scan. attempt_worker is now the worker of the attempt numbered `attempt`
-- while the history array leaves that attempt out (NULL: history holds every attempt). A claim sets
-- it and writes no history; a finish to Complete, Error or Cancelled whose entry the row already
-- tells (outcome = status, error = error, finished_at) keeps it and writes no history either. Every
-- other end of an attempt (retry, release, lease expired) appends the closed entry and clears it.
-- Readers add the entry the columns imply (rows.scan_from_row). Rows written before keep their
-- entries (attempt_worker NULL): a Running one's open entry is closed in place, as before.
-- A nullable column without a default: no row rewritten.
ALTER TABLE scans ADD COLUMN IF NOT EXISTS attempt_worker text;

-- End the scan's current attempt in its history: append the closed entry its columns imply, or
-- close the open entry a claim before version 9 wrote (worker NULL). Inlined like scanq_close_attempt.
CREATE FUNCTION scanq_end_attempt(
    history jsonb, worker text, attempt integer, started_at timestamptz, outcome text, error text
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN worker IS NULL THEN scanq_close_attempt(history, outcome, error)
                ELSE history || jsonb_build_array(jsonb_build_object(
                    'attempt', attempt, 'worker', worker, 'started_at', started_at,
                    'finished_at', now(), 'outcome', outcome, 'error', error))
           END
$$;
