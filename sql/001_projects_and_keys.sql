-- FlowScale schema, part 1: projects and API keys.
-- Idempotent: applied on every `make run` and test start.

CREATE SCHEMA IF NOT EXISTS flowscale;

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA flowscale;

CREATE TABLE IF NOT EXISTS flowscale.projects (
    name           text PRIMARY KEY
                   CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    auth_required  boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each key is kept; key_id is the public part of the key
-- ("fs_<key_id>_<secret>") and names the key in logs, runs and usage.
CREATE TABLE IF NOT EXISTS flowscale.api_keys (
    key_id        text PRIMARY KEY,
    project       text NOT NULL REFERENCES flowscale.projects (name)
                  ON DELETE CASCADE,
    label         text NOT NULL DEFAULT '',
    key_hash      bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX IF NOT EXISTS api_keys_project ON flowscale.api_keys (project);

CREATE OR REPLACE FUNCTION flowscale.create_project(p_name text)
RETURNS text
LANGUAGE sql
AS $$
    INSERT INTO flowscale.projects (name) VALUES (p_name)
    ON CONFLICT (name) DO NOTHING;
    SELECT p_name;
$$;

-- Returns the new key once; only its hash is stored.
CREATE OR REPLACE FUNCTION flowscale.create_api_key(p_project text,
                                                    p_label text DEFAULT '')
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_id   text := encode(flowscale.gen_random_bytes(6), 'hex');
    v_key  text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flowscale.projects WHERE name = p_project)
    THEN
        RAISE EXCEPTION 'no project "%"; create it with flowscale.create_project', p_project;
    END IF;

    v_key := 'fs_' || v_id || '_'
             || translate(encode(flowscale.gen_random_bytes(24), 'base64'),
                          '+/', '-_');

    INSERT INTO flowscale.api_keys (key_id, project, label, key_hash)
    VALUES (v_id, p_project, coalesce(p_label, ''), sha256(convert_to(v_key, 'UTF8')));

    RETURN v_key;
END;
$$;
