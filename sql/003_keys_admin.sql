-- FlowScale schema, part 3: administering API keys, and what nginx asks.
-- Idempotent: applied on every `make run` and test start.
--
-- nginx keeps a cache of keys and projects in shared memory; every change a
-- cache must see is announced on the channel "flowscale_keys" (payload
-- "key:<key_id>" or "project:<name>") by the triggers below, so it reaches
-- every worker at commit, whichever way the row was changed (these
-- functions, or a hand-written UPDATE).

-- Lookups that reached the database (nginx's cache missed): a sequence, so
-- counting costs no row lock and is exact at once.
--     SELECT last_value FROM flowscale.key_lookups;
CREATE SEQUENCE IF NOT EXISTS flowscale.key_lookups;


-- What nginx needs to judge a key for a location of project p_project: one
-- row, always.  p_key_id may be NULL (no key given: is the project public?).
-- last_used_at is written at most once a minute per key, and only on a
-- cache miss, so it costs the hot path nothing.
CREATE OR REPLACE FUNCTION flowscale.lookup_api_key(p_project text,
                                                    p_key_id text)
RETURNS TABLE (project_exists boolean, auth_required boolean,
               key_project text, key_hash text, revoked boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM nextval('flowscale.key_lookups');

    IF p_key_id IS NOT NULL THEN
        UPDATE flowscale.api_keys k
        SET last_used_at = now()
        WHERE k.key_id = p_key_id
          AND k.revoked_at IS NULL
          AND (k.last_used_at IS NULL
               OR k.last_used_at < now() - interval '1 minute');
    END IF;

    RETURN QUERY
    SELECT p.name IS NOT NULL,
           coalesce(p.auth_required, true),
           k.project,
           encode(k.key_hash, 'hex'),
           k.revoked_at IS NOT NULL
    FROM (SELECT 1) AS one
    LEFT JOIN flowscale.projects p ON p.name = p_project
    LEFT JOIN flowscale.api_keys k ON k.key_id = p_key_id;
END;
$$;


-- Revokes one key; true if it existed and was not revoked yet.
CREATE OR REPLACE FUNCTION flowscale.revoke_api_key(p_key_id text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE flowscale.api_keys SET revoked_at = now()
    WHERE key_id = p_key_id AND revoked_at IS NULL;

    RETURN FOUND;
END;
$$;


-- Revokes every key of the project and returns a new one (shown once).
CREATE OR REPLACE FUNCTION flowscale.regenerate_api_key(p_project text,
                                                        p_label text
                                                        DEFAULT 'regenerated')
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flowscale.projects WHERE name = p_project)
    THEN
        RAISE EXCEPTION 'no project "%"; create it with '
                        'flowscale.create_project', p_project;
    END IF;

    UPDATE flowscale.api_keys SET revoked_at = now()
    WHERE project = p_project AND revoked_at IS NULL;

    -- one notification drops every cached key of the project at once
    PERFORM pg_notify('flowscale_keys', 'project:' || p_project);

    RETURN flowscale.create_api_key(p_project, p_label);
END;
$$;


-- false makes the project's API public: no key is asked for.
CREATE OR REPLACE FUNCTION flowscale.set_project_auth(p_project text,
                                                      p_required boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_required IS NULL THEN
        RAISE EXCEPTION 'set_project_auth: required must be true or false';
    END IF;

    UPDATE flowscale.projects SET auth_required = p_required
    WHERE name = p_project;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'no project "%"; create it with '
                        'flowscale.create_project', p_project;
    END IF;

    RETURN p_required;
END;
$$;


-- Notifications: whatever changed a key or a project.

CREATE OR REPLACE FUNCTION flowscale.notify_key_change()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('flowscale_keys', 'key:' || OLD.key_id);
    END IF;

    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('flowscale_keys', 'key:' || NEW.key_id);
    END IF;

    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION flowscale.notify_project_change()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('flowscale_keys', 'project:' || OLD.name);
    END IF;

    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('flowscale_keys', 'project:' || NEW.name);
    END IF;

    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS api_keys_notify_insert_delete ON flowscale.api_keys;
CREATE TRIGGER api_keys_notify_insert_delete
    AFTER INSERT OR DELETE ON flowscale.api_keys
    FOR EACH ROW EXECUTE FUNCTION flowscale.notify_key_change();

-- last_used_at changes are not news to a cache
DROP TRIGGER IF EXISTS api_keys_notify_update ON flowscale.api_keys;
CREATE TRIGGER api_keys_notify_update
    AFTER UPDATE ON flowscale.api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
          OR OLD.project IS DISTINCT FROM NEW.project
          OR OLD.key_id IS DISTINCT FROM NEW.key_id)
    EXECUTE FUNCTION flowscale.notify_key_change();

DROP TRIGGER IF EXISTS projects_notify_insert_delete ON flowscale.projects;
CREATE TRIGGER projects_notify_insert_delete
    AFTER INSERT OR DELETE ON flowscale.projects
    FOR EACH ROW EXECUTE FUNCTION flowscale.notify_project_change();

DROP TRIGGER IF EXISTS projects_notify_update ON flowscale.projects;
CREATE TRIGGER projects_notify_update
    AFTER UPDATE ON flowscale.projects
    FOR EACH ROW
    WHEN (OLD.auth_required IS DISTINCT FROM NEW.auth_required
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION flowscale.notify_project_change();
