-- FlowScale schema, part 8: several nginx fronts on one PostgreSQL.
--
-- Each nginx (a "front") registers itself with a lease it renews every
-- second.  A run belongs to the front that accepted it (runs.front); only
-- that front hands it to a backend, and only after recording the backend
-- here (claim_run), so a front that takes over knows where every run went.
-- When a front's lease runs out, another takes its unfinished runs
-- (take_over_runs) and re-attaches to those already on backends.

CREATE TABLE IF NOT EXISTS flowscale.fronts (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,          -- host and configuration file
    started_at   timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL
);

ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS front uuid;

-- DELETE of a running run through any front: the front that has it is told
-- at once (NOTIFY); the flag is for a front that takes the run over.
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS cancel_requested boolean
    NOT NULL DEFAULT false;

-- The runs on each backend, counted across fronts: few rows, since a run
-- enters it only once a backend is chosen (not on insert).
CREATE INDEX IF NOT EXISTS runs_on_backend
    ON flowscale.runs (backend)
    WHERE backend IS NOT NULL AND status IN ('queued', 'running');


-- A front says it is alive.  known: its row was still there (false on the
-- first beat, and when another front declared it dead and took its runs);
-- fronts: how many fronts hold a lease now.
CREATE OR REPLACE FUNCTION flowscale.front_beat(
    p_id uuid, p_name text, p_lease_ms integer,
    OUT known boolean, OUT fronts integer)
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE flowscale.fronts
    SET lease_until = now() + p_lease_ms * interval '1 millisecond'
    WHERE id = p_id;

    known := FOUND;

    IF NOT known THEN
        INSERT INTO flowscale.fronts (id, name, lease_until)
        VALUES (p_id, p_name, now() + p_lease_ms * interval '1 millisecond');
    END IF;

    SELECT count(*) INTO fronts
    FROM flowscale.fronts WHERE lease_until > now();
END;
$$;


-- The unfinished runs of fronts whose lease ran out become this front's;
-- at a start (p_restart), also those of an earlier life of this same
-- front (by name), of no front (from before this migration), and of a
-- front that never registered (it died before its first beat).  Row locks
-- make each run go to one front only.  Returns how many were taken.
CREATE OR REPLACE FUNCTION flowscale.take_over_runs(
    p_id uuid, p_name text, p_lease_ms integer, p_restart boolean)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_gone  uuid[];
    v_n     integer;
BEGIN
    WITH gone AS (
        DELETE FROM flowscale.fronts
        WHERE id <> p_id
          AND (lease_until < now() OR (p_restart AND name = p_name))
        RETURNING id)
    SELECT coalesce(array_agg(id), '{}') INTO v_gone FROM gone;

    IF cardinality(v_gone) = 0 AND NOT p_restart THEN
        RETURN 0;
    END IF;

    UPDATE flowscale.runs r SET front = p_id
    WHERE r.status IN ('queued', 'running')
      AND (r.front = ANY (v_gone)
           OR r.front IS NULL
           OR (r.created_at < now() - 2 * p_lease_ms * interval '1 millisecond'
               AND r.front <> p_id
               AND NOT EXISTS (SELECT 1 FROM flowscale.fronts f
                               WHERE f.id = r.front)));

    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;


-- Before a run goes to a backend: records the backend, if the run is
-- still this front's and unfinished ('gone' otherwise) and its deployment
-- is not stopped ('stopped': it waits), and, when p_depth
-- is given (several fronts), only if fewer than p_depth runs are on that
-- backend across all fronts ('full' otherwise).  The advisory lock makes
-- concurrent claims on one backend take turns.  With p_fetch, the prompt
-- and the input files come back too.
CREATE OR REPLACE FUNCTION flowscale.claim_run(
    p_id uuid, p_front uuid, p_backend text, p_depth integer,
    p_fetch boolean,
    OUT claimed text, OUT prompt jsonb, OUT files json)
LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM flowscale.runs r
               JOIN flowscale.deployments d
                 ON d.project = r.project AND d.name = r.deployment
                AND d.stopped
               WHERE r.id = p_id)
    THEN
        claimed := 'stopped';
        RETURN;
    END IF;

    IF p_depth IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('flowscale.backend:'
                                               || p_backend));

        IF (SELECT count(*) FROM flowscale.runs
            WHERE backend = p_backend AND status IN ('queued', 'running')
              AND id <> p_id) >= p_depth
        THEN
            claimed := 'full';
            RETURN;
        END IF;
    END IF;

    UPDATE flowscale.runs r SET backend = p_backend
    WHERE r.id = p_id AND r.front = p_front
      AND r.status IN ('queued', 'running')
    RETURNING CASE WHEN p_fetch THEN r.prompt END INTO prompt;

    IF NOT FOUND THEN
        claimed := 'gone';
        RETURN;
    END IF;

    claimed := 'ok';

    IF p_fetch THEN
        SELECT coalesce(json_agg(json_build_object(
                   'input', f.input, 'node', f.node, 'slot', f.slot,
                   'filename', f.filename, 'content_type', f.content_type,
                   'data', encode(f.data, 'base64'))), '[]')
        INTO files
        FROM flowscale.run_files f WHERE f.run_id = p_id;
    END IF;
END;
$$;


-- Runs on each backend that other fronts put there.
CREATE OR REPLACE FUNCTION flowscale.foreign_runs(p_front uuid)
RETURNS TABLE (backend text, runs bigint)
LANGUAGE sql STABLE
AS $$
    SELECT r.backend, count(*)
    FROM flowscale.runs r
    WHERE r.backend IS NOT NULL AND r.status IN ('queued', 'running')
      AND r.front IS DISTINCT FROM p_front
    GROUP BY r.backend;
$$;


-- accept_run (parts 2 and 5) with the accepting front; the older forms go.
DROP FUNCTION IF EXISTS flowscale.accept_run(uuid, text, text, text, text,
    jsonb, jsonb, jsonb);
DROP FUNCTION IF EXISTS flowscale.accept_run(uuid, text, text, text, text,
    jsonb, jsonb, jsonb, text, text, text);

CREATE OR REPLACE FUNCTION flowscale.accept_run(
    p_id uuid, p_project text, p_deployment text, p_version text,
    p_key_id text, p_inputs jsonb, p_prompt jsonb, p_files jsonb,
    p_webhook text, p_idempotency_key text, p_request_hash text,
    p_front uuid,
    OUT run_id uuid, OUT created boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    v_old record;
BEGIN
    -- stop_deployment() holds at once, on every front (nginx polls it too)
    IF EXISTS (SELECT 1 FROM flowscale.deployments d
               WHERE d.project = p_project AND d.name = p_deployment
                 AND d.stopped)
    THEN
        RAISE EXCEPTION 'deployment "%" of project "%" is stopped',
            p_deployment, p_project USING ERRCODE = 'FS503';
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT id, request_hash, created_at INTO v_old
        FROM flowscale.runs
        WHERE project = p_project AND idempotency_key = p_idempotency_key
        FOR UPDATE;

        IF FOUND THEN
            IF v_old.created_at > now() - interval '24 hours' THEN
                IF v_old.request_hash IS DISTINCT FROM p_request_hash THEN
                    RAISE EXCEPTION 'Idempotency-Key was used with another request'
                        USING ERRCODE = 'FS422';
                END IF;

                run_id := v_old.id;
                created := false;
                RETURN;
            END IF;

            -- older than a day: the key is free again
            UPDATE flowscale.runs SET idempotency_key = NULL
            WHERE id = v_old.id;
        END IF;
    END IF;

    BEGIN
        INSERT INTO flowscale.runs (id, project, deployment, version, key_id,
                                    inputs, prompt, webhook, idempotency_key,
                                    request_hash, front)
        VALUES (p_id, p_project, p_deployment, p_version, p_key_id, p_inputs,
                p_prompt, p_webhook, p_idempotency_key, p_request_hash,
                p_front);
    EXCEPTION WHEN unique_violation THEN
        -- the same key at the same moment: the first one wins
        SELECT id, request_hash INTO v_old
        FROM flowscale.runs
        WHERE project = p_project AND idempotency_key = p_idempotency_key;

        IF v_old.request_hash IS DISTINCT FROM p_request_hash THEN
            RAISE EXCEPTION 'Idempotency-Key was used with another request'
                USING ERRCODE = 'FS422';
        END IF;

        run_id := v_old.id;
        created := false;
        RETURN;
    END;

    INSERT INTO flowscale.run_files (run_id, input, node, slot, filename,
                                     content_type, data)
    SELECT p_id, f->>'input', f->>'node', f->>'slot', f->>'filename',
           f->>'content_type', decode(f->>'data', 'base64')
    FROM jsonb_array_elements(coalesce(p_files, '[]'::jsonb)) AS f;

    run_id := p_id;
    created := true;
END;
$$;
