-- hpcsera schema, SQLite flavour. Times are Unix milliseconds (BIGINT).
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);
CREATE TABLE projects (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE TABLE memberships (
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, project_id)
);
CREATE INDEX memberships_project ON memberships(project_id);
CREATE TABLE sites (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    agent_version TEXT,
    agent_host    TEXT,
    last_seen_at  BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id   BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    roles        BIGINT NOT NULL,
    site         TEXT,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE job_types (
    site_id    BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (site_id, name)
);
CREATE TABLE jobs (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    project_id    BIGINT NOT NULL REFERENCES projects(id),
    owner_id      BIGINT NOT NULL REFERENCES users(id),
    site_id       BIGINT NOT NULL REFERENCES sites(id),
    job_type      TEXT NOT NULL,
    status        TEXT NOT NULL,
    parameters    TEXT NOT NULL,
    metadata      TEXT,
    callback_url  TEXT,
    held          BIGINT NOT NULL DEFAULT 0,
    pending_op    TEXT,
    pending_op_at BIGINT,
    pending_op_by TEXT,
    batch_job_id  TEXT,
    exit_code     BIGINT,
    message       TEXT,
    sub_jobs      TEXT NOT NULL DEFAULT '[]',
    agent_token   TEXT,
    lease_until   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    deleted_at    BIGINT
);
CREATE INDEX jobs_project_seq ON jobs(project_id, seq);
CREATE INDEX jobs_project_status_seq ON jobs(project_id, status, seq);
CREATE INDEX jobs_site_status_seq ON jobs(site_id, status, seq);
CREATE TABLE job_events (
    seq         BIGSERIAL PRIMARY KEY,
    job_seq     BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    project_id  BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    actor       TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX job_events_job ON job_events(job_seq, seq);
CREATE INDEX job_events_project ON job_events(project_id, seq);
CREATE TABLE idempotency_keys (
    project_id   BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    job_seq      BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id, key)
);
CREATE INDEX idempotency_keys_job ON idempotency_keys(job_seq);
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    token_id   TEXT,
    user_name  TEXT,
    project    TEXT,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     BIGINT NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_token ON audit_log(token_id, at);
