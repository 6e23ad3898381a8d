-- Web UI sessions and one-time invitations. Only the SHA-256 of each secret is kept: the
-- session id lives in the browser's cookie, the invitation in the link that was handed out.
CREATE TABLE sessions (
    hash         TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The per-session CSRF token that every form of the session carries (not a credential
    -- on its own: a request needs the session cookie too).
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- The absolute end, whatever the activity.
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE TABLE invites (
    hash       TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
