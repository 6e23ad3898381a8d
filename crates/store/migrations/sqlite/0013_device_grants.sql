-- OAuth 2.0 device authorization requests (RFC 8628): a headless client asks for a token, a
-- person approves (possibly narrowed) or denies it in the web UI, the client redeems it once.
-- Both codes are kept only as SHA-256 hashes: the device code is the client's secret, the
-- user code the short code a person types.
CREATE TABLE device_grants (
    id            TEXT PRIMARY KEY,
    device_hash   TEXT NOT NULL UNIQUE,
    user_hash     TEXT NOT NULL UNIQUE,
    -- The client's display name (its client_id), shown to the person and on the token.
    client_name   TEXT NOT NULL,
    -- What was asked for (the parsed scope).
    project       TEXT NOT NULL,
    roles         BIGINT NOT NULL,
    site          TEXT,
    lifetime_ms   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    -- The polling interval the client must keep, in seconds (grows by 5 with each slow_down).
    interval_s    BIGINT NOT NULL,
    last_poll_at  BIGINT,
    -- pending, approved, denied or redeemed.
    status        TEXT NOT NULL,
    -- Who decided, and what was granted (possibly less than asked).
    user_id       BIGINT REFERENCES users(id) ON DELETE CASCADE,
    granted_roles BIGINT,
    granted_ms    BIGINT,
    decided_at    BIGINT,
    -- The token issued when the grant was redeemed.
    token_id      TEXT
);
CREATE INDEX device_grants_expires ON device_grants (expires_at);
