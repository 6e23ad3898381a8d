-- Job types and agent health belong to (site, project): what one project's agent publishes
-- for a site changes nothing another project sees or runs there (DESIGN §2).
-- Existing data is kept: every project keeps seeing the job types and the agent health that
-- it saw before (they were shared by all projects).
ALTER TABLE job_types RENAME TO job_types_shared;
CREATE TABLE job_types (
    site_id    INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, project_id, name)
);
INSERT INTO job_types (site_id, project_id, name, spec, updated_at)
    SELECT jt.site_id, p.id, jt.name, jt.spec, jt.updated_at FROM job_types_shared jt CROSS JOIN projects p;
DROP TABLE job_types_shared;
CREATE TABLE site_agents (
    site_id       INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_version TEXT,
    agent_host    TEXT,
    last_seen_at  INTEGER,
    PRIMARY KEY (site_id, project_id)
);
INSERT INTO site_agents (site_id, project_id, agent_version, agent_host, last_seen_at)
    SELECT s.id, p.id, s.agent_version, s.agent_host, s.last_seen_at FROM sites s CROSS JOIN projects p
    WHERE s.last_seen_at IS NOT NULL;
ALTER TABLE sites DROP COLUMN agent_version;
ALTER TABLE sites DROP COLUMN agent_host;
ALTER TABLE sites DROP COLUMN last_seen_at;
-- A site an admin added is listed for every project; one that an agent's publication created
-- is listed only for the projects that have job types or an agent there. Sites that exist
-- now were listed for everyone.
ALTER TABLE sites ADD COLUMN listed INTEGER NOT NULL DEFAULT 0;
UPDATE sites SET listed = 1;
