-- The agent's side: claims with leases, output streams, result files.
CREATE INDEX jobs_agent ON jobs(agent_token, status);
CREATE INDEX jobs_lease ON jobs(lease_until);
ALTER TABLE jobs ADD COLUMN stdout_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stderr_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_truncated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN claim_confirmed INTEGER NOT NULL DEFAULT 0;
CREATE TABLE job_output (
    job_seq   INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    stream    TEXT NOT NULL,
    start_at  INTEGER NOT NULL,
    end_at    INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (job_seq, stream, start_at)
);
CREATE TABLE job_results (
    job_seq    INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_seq, name)
);
