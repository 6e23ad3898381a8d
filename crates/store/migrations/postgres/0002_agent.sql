-- The agent's side: claims with leases, output streams, result files.
CREATE INDEX jobs_agent ON jobs(agent_token, status);
CREATE INDEX jobs_lease ON jobs(lease_until);
ALTER TABLE jobs ADD COLUMN stdout_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stderr_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_truncated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN claim_confirmed BIGINT NOT NULL DEFAULT 0;
CREATE TABLE job_output (
    job_seq   BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    stream    TEXT NOT NULL,
    start_at  BIGINT NOT NULL,
    end_at    BIGINT NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (job_seq, stream, start_at)
);
CREATE TABLE job_results (
    job_seq    BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_seq, name)
);
