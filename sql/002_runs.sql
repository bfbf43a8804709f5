-- FlowScale schema, part 2: runs.  A run is accepted only once its row is
-- committed here; shared memory in nginx is only the live view.

CREATE TABLE IF NOT EXISTS flowscale.runs (
    id              uuid PRIMARY KEY,
    project         text NOT NULL,
    deployment      text NOT NULL,
    version         text NOT NULL,
    key_id          text,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded',
                                      'failed', 'canceled')),
    inputs          jsonb NOT NULL,
    prompt          jsonb NOT NULL,   -- the graph to submit, files not yet uploaded
    outputs         jsonb,
    error           jsonb,
    backend         text,
    prompt_number   bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE INDEX IF NOT EXISTS runs_by_deployment
    ON flowscale.runs (project, deployment, created_at DESC, id DESC);

CREATE INDEX IF NOT EXISTS runs_unfinished
    ON flowscale.runs (created_at)
    WHERE status IN ('queued', 'running');

-- Input files are kept until the run ends, so a retry on another backend
-- still has them.
CREATE TABLE IF NOT EXISTS flowscale.run_files (
    run_id        uuid NOT NULL REFERENCES flowscale.runs (id)
                  ON DELETE CASCADE,
    input         text NOT NULL,
    node          text NOT NULL,
    slot          text NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL,
    data          bytea NOT NULL,
    PRIMARY KEY (run_id, input)
);

-- One statement, one transaction: the run and its files, or nothing.
-- p_files: [{"input", "node", "slot", "filename", "content_type",
--            "data": base64}]
CREATE OR REPLACE FUNCTION flowscale.accept_run(
    p_id uuid, p_project text, p_deployment text, p_version text,
    p_key_id text, p_inputs jsonb, p_prompt jsonb, p_files jsonb)
RETURNS timestamptz
LANGUAGE plpgsql
AS $$
DECLARE
    v_created timestamptz;
BEGIN
    INSERT INTO flowscale.runs (id, project, deployment, version, key_id,
                                inputs, prompt)
    VALUES (p_id, p_project, p_deployment, p_version, p_key_id, p_inputs,
            p_prompt)
    RETURNING created_at INTO v_created;

    INSERT INTO flowscale.run_files (run_id, input, node, slot, filename,
                                     content_type, data)
    SELECT p_id, f->>'input', f->>'node', f->>'slot', f->>'filename',
           f->>'content_type', decode(f->>'data', 'base64')
    FROM jsonb_array_elements(coalesce(p_files, '[]'::jsonb)) AS f;

    RETURN v_created;
END;
$$;
