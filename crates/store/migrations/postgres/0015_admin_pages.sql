-- The web UI's admin pages (issue 10).
-- A disabled account cannot log in, its sessions are ended and its tokens are refused; its
-- memberships, tokens and history stay, so enabling it again restores them.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
-- The audit log's filters (user, project) page newest first by id; the time range uses
-- audit_log_at.
CREATE INDEX audit_log_user ON audit_log(user_name, id);
CREATE INDEX audit_log_project ON audit_log(project, id);
