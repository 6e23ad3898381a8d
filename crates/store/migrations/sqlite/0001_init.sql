-- hpcsera schema, SQLite flavour. Times are Unix milliseconds (INTEGER).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
CREATE TABLE memberships (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, project_id)
);
CREATE INDEX memberships_project ON memberships(project_id);
CREATE TABLE sites (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    agent_version TEXT,
    agent_host    TEXT,
    last_seen_at  INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    roles        INTEGER NOT NULL,
    site         TEXT,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE job_types (
    site_id    INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, name)
);
CREATE TABLE jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    owner_id      INTEGER NOT NULL REFERENCES users(id),
    site_id       INTEGER NOT NULL REFERENCES sites(id),
    job_type      TEXT NOT NULL,
    status        TEXT NOT NULL,
    parameters    TEXT NOT NULL,
    metadata      TEXT,
    callback_url  TEXT,
    held          INTEGER NOT NULL DEFAULT 0,
    pending_op    TEXT,
    pending_op_at INTEGER,
    pending_op_by TEXT,
    batch_job_id  TEXT,
    exit_code     INTEGER,
    message       TEXT,
    sub_jobs      TEXT NOT NULL DEFAULT '[]',
    agent_token   TEXT,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    deleted_at    INTEGER
);
CREATE INDEX jobs_project_seq ON jobs(project_id, seq);
CREATE INDEX jobs_project_status_seq ON jobs(project_id, status, seq);
CREATE INDEX jobs_site_status_seq ON jobs(site_id, status, seq);
CREATE TABLE job_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq     INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    project_id  INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    actor       TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX job_events_job ON job_events(job_seq, seq);
CREATE INDEX job_events_project ON job_events(project_id, seq);
CREATE TABLE idempotency_keys (
    project_id   INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    job_seq      INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id, key)
);
CREATE INDEX idempotency_keys_job ON idempotency_keys(job_seq);
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    token_id   TEXT,
    user_name  TEXT,
    project    TEXT,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_token ON audit_log(token_id, at);
