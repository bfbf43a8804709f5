-- FlowScale schema, part 5: Idempotency-Key.  The same key from the same
-- project within 24 hours returns the original run; the same key with
-- another request is refused (SQLSTATE FS422).

ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS idempotency_key text;
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS request_hash text;
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS webhook text;

CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency
    ON flowscale.runs (project, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Returns the run's id and whether this call created it.
CREATE OR REPLACE FUNCTION flowscale.accept_run(
    p_id uuid, p_project text, p_deployment text, p_version text,
    p_key_id text, p_inputs jsonb, p_prompt jsonb, p_files jsonb,
    p_webhook text, p_idempotency_key text, p_request_hash text,
    OUT run_id uuid, OUT created boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    v_old record;
BEGIN
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
                                    request_hash)
        VALUES (p_id, p_project, p_deployment, p_version, p_key_id, p_inputs,
                p_prompt, p_webhook, p_idempotency_key, p_request_hash);
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
