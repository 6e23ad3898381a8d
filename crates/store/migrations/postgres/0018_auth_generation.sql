-- The generation of authentication (issue 15): a counter that every change to what
-- Store::authenticate decides bumps — a token revoked or changed, a membership changed or
-- removed, a user or project changed or removed — whichever process makes it (the server, the
-- admin CLI, another replica). Servers cache verified tokens and drop their cache when they
-- see the counter move (checked at most every second); their own changes drop it at once.
CREATE TABLE auth_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);
CREATE FUNCTION hpcsera_bump_auth_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER auth_generation_tokens
AFTER UPDATE OF revoked_at, expires_at, roles, site, hash, user_id, project_id OR DELETE ON tokens
FOR EACH STATEMENT EXECUTE FUNCTION hpcsera_bump_auth_generation();
CREATE TRIGGER auth_generation_memberships AFTER UPDATE OR DELETE ON memberships
FOR EACH STATEMENT EXECUTE FUNCTION hpcsera_bump_auth_generation();
CREATE TRIGGER auth_generation_users AFTER UPDATE OR DELETE ON users
FOR EACH STATEMENT EXECUTE FUNCTION hpcsera_bump_auth_generation();
CREATE TRIGGER auth_generation_projects AFTER UPDATE OF name OR DELETE ON projects
FOR EACH STATEMENT EXECUTE FUNCTION hpcsera_bump_auth_generation();
