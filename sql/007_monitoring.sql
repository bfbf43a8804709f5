-- FlowScale schema, part 7 (issue 7): the deployment registry, stopping
-- and starting deployments, and the usage view.

-- Every version of every deployment nginx has loaded.  nginx's leader
-- upserts each deployment once per configuration (a reload with a changed
-- workflow or I/O has another version: a new row) and keeps `state` in
-- step.  `stopped` belongs to the deployment (project, name): every
-- version's row carries it, and a new version inherits it.
CREATE TABLE IF NOT EXISTS flowscale.deployments (
    project     text NOT NULL,
    name        text NOT NULL,
    version     text NOT NULL,
    workflow    jsonb NOT NULL,             -- the API-format graph
    io          jsonb NOT NULL,             -- the descriptor of GET L
    state       text NOT NULL DEFAULT 'preparing'
                CHECK (state IN ('preparing', 'deploying', 'ready',
                                 'failed', 'stopped')),
    reason      text,
    stopped     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name, version)
);

CREATE INDEX IF NOT EXISTS deployments_stopped
    ON flowscale.deployments (project, name) WHERE stopped;

-- Called by nginx: returns whether the deployment is stopped.
CREATE OR REPLACE FUNCTION flowscale.register_deployment(
    p_project text, p_name text, p_version text, p_workflow jsonb,
    p_io jsonb, p_state text, p_reason text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    v_stopped boolean;
BEGIN
    SELECT coalesce(bool_or(stopped), false) INTO v_stopped
    FROM flowscale.deployments
    WHERE project = p_project AND name = p_name;

    INSERT INTO flowscale.deployments (project, name, version, workflow, io,
                                       state, reason, stopped)
    VALUES (p_project, p_name, p_version, p_workflow, p_io,
            CASE WHEN v_stopped THEN 'stopped' ELSE p_state END, p_reason,
            v_stopped)
    ON CONFLICT (project, name, version) DO UPDATE
        SET workflow = EXCLUDED.workflow,
            io = EXCLUDED.io,
            state = EXCLUDED.state,
            reason = EXCLUDED.reason,
            updated_at = now();

    RETURN v_stopped;
END;
$$;

-- New runs of the deployment get 503 "deployment stopped" from every nginx
-- within a second; runs already accepted go on.  Kept across restarts.
CREATE OR REPLACE FUNCTION flowscale.stop_deployment(p_project text,
                                                     p_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE flowscale.deployments
    SET stopped = true, state = 'stopped', updated_at = now()
    WHERE project = p_project AND name = p_name;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'no deployment "%" in project "%" (nginx records '
                        'a deployment when it loads it)', p_name, p_project
            USING ERRCODE = 'no_data_found';
    END IF;

    PERFORM pg_notify('flowscale_deployments',
                      json_build_object('project', p_project, 'name', p_name,
                                        'stopped', true)::text);
END;
$$;

CREATE OR REPLACE FUNCTION flowscale.start_deployment(p_project text,
                                                      p_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- nginx writes the state it finds (ready, deploying or failed)
    UPDATE flowscale.deployments
    SET stopped = false, state = 'deploying', updated_at = now()
    WHERE project = p_project AND name = p_name;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'no deployment "%" in project "%" (nginx records '
                        'a deployment when it loads it)', p_name, p_project
            USING ERRCODE = 'no_data_found';
    END IF;

    PERFORM pg_notify('flowscale_deployments',
                      json_build_object('project', p_project, 'name', p_name,
                                        'stopped', false)::text);
END;
$$;

-- Usage per project, API key, deployment and UTC day (of creation):
--   SELECT * FROM flowscale.usage_daily WHERE project = 'demo'
--   ORDER BY day DESC, deployment;
-- gpu_seconds is execution time (started to finished) of runs that ran;
-- queue_wait_seconds is accepted to started.  A NULL key_id is the public
-- API.
CREATE OR REPLACE VIEW flowscale.usage_daily AS
SELECT project,
       key_id,
       deployment,
       (created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS runs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(sum(extract(epoch FROM finished_at - started_at))
                FILTER (WHERE started_at IS NOT NULL
                        AND finished_at IS NOT NULL), 0)::float8
           AS gpu_seconds,
       coalesce(sum(extract(epoch FROM started_at - created_at))
                FILTER (WHERE started_at IS NOT NULL), 0)::float8
           AS queue_wait_seconds
FROM flowscale.runs
GROUP BY project, key_id, deployment, (created_at AT TIME ZONE 'UTC')::date;
