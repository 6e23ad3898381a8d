-- The generation of authentication (issue 15): a counter that every change to what
-- Store::authenticate decides bumps — a token revoked or changed, a membership changed or
-- removed, a user or project changed or removed — whichever process makes it (the server, the
-- admin CLI, another replica). Servers cache verified tokens and drop their cache when they
-- see the counter move (checked at most every second); their own changes drop it at once.
CREATE TABLE auth_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);
CREATE TRIGGER auth_generation_tokens_update
AFTER UPDATE OF revoked_at, expires_at, roles, site, hash, user_id, project_id ON tokens
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_tokens_delete AFTER DELETE ON tokens
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_memberships_update AFTER UPDATE ON memberships
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_memberships_delete AFTER DELETE ON memberships
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_users_update AFTER UPDATE ON users
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_users_delete AFTER DELETE ON users
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_projects_update AFTER UPDATE OF name ON projects
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER auth_generation_projects_delete AFTER DELETE ON projects
BEGIN UPDATE auth_generation SET generation = generation + 1 WHERE id = 1; END;
