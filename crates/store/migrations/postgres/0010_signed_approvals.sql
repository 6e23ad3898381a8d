-- People's SSH public keys (like SSH keys on a code forge): a signed code approval is
-- recorded as the decision of the user who registered the signing key. A key belongs to one
-- user at most, so a signature names one person.
CREATE TABLE user_keys (
    id          TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- "type base64" without the comment, as OpenSSH writes a public key.
    public_key  TEXT NOT NULL,
    -- "SHA256:…", as ssh-keygen -l prints it.
    fingerprint TEXT NOT NULL UNIQUE,
    algorithm   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX user_keys_user ON user_keys (user_id);
-- A signed approval: the canonical message, the armored SSHSIG and the key's fingerprint, so
-- that agents can check the approval themselves.
ALTER TABLE code_bundles ADD COLUMN approval_message TEXT;
ALTER TABLE code_bundles ADD COLUMN approval_signature TEXT;
ALTER TABLE code_bundles ADD COLUMN approval_key TEXT;
