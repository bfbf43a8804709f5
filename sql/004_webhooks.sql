-- FlowScale schema, part 4: webhooks.  A run created with "webhook" gets
-- the run JSON POSTed there when it ends, signed per Standard Webhooks with
-- the project's secret; every attempt is recorded here.
-- Idempotent: applied on every `make run` and test start.

ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS webhook text;

-- NULL (no webhook, or not ended yet), 'pending' (an attempt is due at
-- webhook_next_at), 'delivered' or 'failed' (given up).  The nginx worker
-- that recorded the end of the run delivers it; 'pending' rows whose
-- webhook_next_at has long passed are what a restart left behind.
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS webhook_status text;
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS webhook_next_at timestamptz;

DO $$
BEGIN
    ALTER TABLE flowscale.runs ADD CONSTRAINT runs_webhook_status
        CHECK (webhook_status IN ('pending', 'delivered', 'failed'));
EXCEPTION WHEN duplicate_object THEN
    NULL;
END;
$$;

CREATE INDEX IF NOT EXISTS runs_webhook_pending
    ON flowscale.runs (webhook_next_at)
    WHERE webhook_status = 'pending';

-- One Standard Webhooks secret per project: "whsec_" + base64 of 32 random
-- bytes; receivers verify with the decoded bytes.
CREATE TABLE IF NOT EXISTS flowscale.webhook_secrets (
    project     text PRIMARY KEY,   -- runs.project: a public API's project
                                    -- need not be in flowscale.projects
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+=*$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every delivery attempt: the HTTP status the receiver answered, or the
-- error that stopped the attempt (resolution, connection, TLS, timeout),
-- and when the next attempt is due (NULL: delivered or given up).
CREATE TABLE IF NOT EXISTS flowscale.webhook_attempts (
    run_id    uuid NOT NULL REFERENCES flowscale.runs (id) ON DELETE CASCADE,
    attempt   integer NOT NULL CHECK (attempt >= 1),
    at        timestamptz NOT NULL DEFAULT now(),
    url       text NOT NULL,
    status    integer,
    error     text,
    next_at   timestamptz,
    PRIMARY KEY (run_id, attempt)
);

-- The project's secret, created on first use.
CREATE OR REPLACE FUNCTION flowscale.webhook_secret(p_project text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_secret text;
BEGIN
    SELECT secret INTO v_secret
    FROM flowscale.webhook_secrets WHERE project = p_project;

    IF FOUND THEN
        RETURN v_secret;
    END IF;

    INSERT INTO flowscale.webhook_secrets (project, secret)
    VALUES (p_project,
            'whsec_' || encode(flowscale.gen_random_bytes(32), 'base64'))
    ON CONFLICT (project) DO NOTHING;

    SELECT secret INTO v_secret
    FROM flowscale.webhook_secrets WHERE project = p_project;

    RETURN v_secret;
END;
$$;

-- A new secret; deliveries that start from now on are signed with it.
CREATE OR REPLACE FUNCTION flowscale.rotate_webhook_secret(p_project text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_secret text := 'whsec_' || encode(flowscale.gen_random_bytes(32), 'base64');
BEGIN
    INSERT INTO flowscale.webhook_secrets (project, secret)
    VALUES (p_project, v_secret)
    ON CONFLICT (project) DO UPDATE
        SET secret = EXCLUDED.secret, created_at = now();

    RETURN v_secret;
END;
$$;

-- Called by nginx after each attempt.  p_next_in_ms: the delay before the
-- next attempt, NULL when there is none; p_final: 'delivered' or 'failed'
-- when this attempt ended the delivery.
CREATE OR REPLACE FUNCTION flowscale.record_webhook_attempt(
    p_run_id uuid, p_attempt integer, p_url text, p_status integer,
    p_error text, p_next_in_ms bigint, p_final text)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO flowscale.webhook_attempts (run_id, attempt, url, status,
                                            error, next_at)
    VALUES (p_run_id, p_attempt, p_url, p_status, p_error,
            now() + p_next_in_ms * interval '1 millisecond')
    ON CONFLICT (run_id, attempt) DO UPDATE
        SET at = now(), url = EXCLUDED.url, status = EXCLUDED.status,
            error = EXCLUDED.error, next_at = EXCLUDED.next_at;

    UPDATE flowscale.runs
    SET webhook_status = coalesce(p_final, 'pending'),
        webhook_next_at = now() + p_next_in_ms * interval '1 millisecond'
    WHERE id = p_run_id;
$$;

-- Called by nginx when a run with a webhook ends: marks its delivery
-- pending and returns the project's secret.
CREATE OR REPLACE FUNCTION flowscale.webhook_start(p_run_id uuid,
                                                  p_project text)
RETURNS text
LANGUAGE sql
AS $$
    UPDATE flowscale.runs
    SET webhook_status = 'pending', webhook_next_at = now()
    WHERE id = p_run_id AND webhook_status IS DISTINCT FROM 'delivered';

    SELECT flowscale.webhook_secret(p_project);
$$;
