-- Signed provenance (issue 14). A job's manifest is kept as the exact bytes its agent signed,
-- with the signature and the key the agent says it used; the digests it names (result files,
-- code bundles, other inputs) go into an index of their own, so that "which job made this
-- file?" is an index lookup, never a scan of manifests.
CREATE TABLE job_provenance (
    job_seq    INTEGER PRIMARY KEY REFERENCES jobs(seq) ON DELETE CASCADE,
    project_id INTEGER NOT NULL,
    manifest   BLOB NOT NULL,
    signature  TEXT NOT NULL,
    agent_key  TEXT NOT NULL,
    job_type   TEXT NOT NULL,
    ended_at   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX job_provenance_project ON job_provenance(project_id, job_seq);
CREATE INDEX job_provenance_type ON job_provenance(project_id, job_type, job_seq);
CREATE TABLE provenance_digests (
    project_id INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    job_seq    INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    size       INTEGER,
    PRIMARY KEY (project_id, sha256, job_seq, role, name)
);
CREATE INDEX provenance_digests_job ON provenance_digests(job_seq);
-- The public key an agent published with its job types (information; the trust anchor is
-- the key a client got from the agent's operator).
ALTER TABLE site_agents ADD COLUMN agent_key TEXT;
