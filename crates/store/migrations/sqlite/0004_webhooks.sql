-- Webhooks: a signing secret per project, and an outbox of deliveries written with the events.
ALTER TABLE projects ADD COLUMN webhook_secret TEXT;
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq         INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    project_id      INTEGER NOT NULL,
    event_seq       INTEGER NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries(job_seq, id);
