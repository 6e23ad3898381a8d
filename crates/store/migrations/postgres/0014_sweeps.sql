-- Sweeps (issue 13): many jobs of one job type in one request. Members are ordinary jobs
-- that name their sweep and their index in it. Deleting a sweep row leaves members an agent
-- still holds (hidden, removed when they end) without their sweep.
CREATE TABLE sweeps (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    project_id   BIGINT NOT NULL REFERENCES projects(id),
    owner_id     BIGINT NOT NULL REFERENCES users(id),
    site_id      BIGINT NOT NULL REFERENCES sites(id),
    job_type     TEXT NOT NULL,
    parameters   TEXT NOT NULL,
    resources    TEXT,
    metadata     TEXT,
    callback_url TEXT,
    members      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX sweeps_project_seq ON sweeps(project_id, seq);
ALTER TABLE jobs ADD COLUMN sweep_seq BIGINT REFERENCES sweeps(seq) ON DELETE SET NULL;
ALTER TABLE jobs ADD COLUMN sweep_index BIGINT;
-- Counts by status (one GROUP BY) and member pages in index order.
CREATE INDEX jobs_sweep_status ON jobs(sweep_seq, status);
CREATE INDEX jobs_sweep_index ON jobs(sweep_seq, sweep_index);
CREATE TABLE sweep_idempotency_keys (
    project_id   BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    sweep_seq    BIGINT NOT NULL REFERENCES sweeps(seq) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id, key)
);
CREATE INDEX sweep_idempotency_keys_sweep ON sweep_idempotency_keys(sweep_seq);
