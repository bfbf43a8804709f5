-- FlowScale schema, part 10: webhook deliveries a restart or a reload left
-- behind.  A delivery waiting for a retry lives on a worker's timer; when
-- that worker is gone, its row stays 'pending' with webhook_next_at in the
-- past.  Any nginx front claims a few whose attempt is overdue by more
-- than p_stale_ms (no live worker can still be on them) and delivers them
-- again, after the attempts already recorded.  The claim moves
-- webhook_next_at to now, and row locks give each to one front.
DROP FUNCTION IF EXISTS flowscale.webhooks_left_behind(integer, integer);

-- Its columns start with those nginx reads a run with (run.c), then the
-- webhook and the attempts made.
CREATE OR REPLACE FUNCTION flowscale.webhooks_left_behind(
    p_stale_ms integer, p_limit integer)
RETURNS TABLE (id uuid, deployment text, version text, status text,
               inputs jsonb, outputs jsonb, error jsonb, created bigint,
               started bigint, finished bigint, project text,
               progress jsonb, webhook text, attempts bigint)
LANGUAGE sql
AS $$
    WITH due AS (
        SELECT r.id FROM flowscale.runs r
        WHERE r.webhook_status = 'pending'
          AND r.webhook_next_at < now() - p_stale_ms * interval '1 millisecond'
        ORDER BY r.webhook_next_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE flowscale.runs r SET webhook_next_at = now()
        FROM due WHERE r.id = due.id
        RETURNING r.*)
    SELECT c.id, c.deployment, c.version, c.status, c.inputs, c.outputs,
           c.error, (extract(epoch FROM c.created_at) * 1000)::bigint,
           coalesce((extract(epoch FROM c.started_at) * 1000)::bigint, 0),
           coalesce((extract(epoch FROM c.finished_at) * 1000)::bigint, 0),
           c.project, c.progress, c.webhook,
           (SELECT count(*) FROM flowscale.webhook_attempts a
            WHERE a.run_id = c.id)
    FROM claimed c;
$$;
