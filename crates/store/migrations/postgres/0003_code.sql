-- Code bundles: metadata here, the bytes in files under the server's code directory
-- (content-addressed, shared between projects that upload the same bytes).
CREATE TABLE code_bundles (
    project_id      BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    id              TEXT NOT NULL,
    size            BIGINT NOT NULL,
    status          TEXT NOT NULL,
    uploaded_by     BIGINT NOT NULL REFERENCES users(id),
    created_at      BIGINT NOT NULL,
    hpc_sha256      TEXT,
    hpc_reported_at BIGINT,
    hpc_reported_by TEXT,
    decided_by      TEXT,
    decided_at      BIGINT,
    reason          TEXT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX code_bundles_id ON code_bundles(id);
-- Which code bundles a job references (one row per code parameter).
CREATE TABLE job_code (
    job_seq    BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    param      TEXT NOT NULL,
    project_id BIGINT NOT NULL,
    code_id    TEXT NOT NULL,
    PRIMARY KEY (job_seq, param)
);
CREATE INDEX job_code_code ON job_code(project_id, code_id);
