-- FlowScale schema, part 6: GET L/runs pages by run id (UUIDv7, ordered by
-- creation) within a project's deployment.

CREATE INDEX IF NOT EXISTS runs_list
    ON flowscale.runs (project, deployment, id DESC);

CREATE INDEX IF NOT EXISTS runs_list_status
    ON flowscale.runs (project, deployment, status, id DESC);

-- Times as the API shows them everywhere: UTC, milliseconds, "Z".
CREATE OR REPLACE FUNCTION flowscale.iso(t timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
