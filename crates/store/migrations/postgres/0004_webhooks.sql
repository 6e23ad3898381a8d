-- Webhooks: a signing secret per project, and an outbox of deliveries written with the events.
ALTER TABLE projects ADD COLUMN webhook_secret TEXT;
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    job_seq         BIGINT NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    event_seq       BIGINT NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries(job_seq, id);
