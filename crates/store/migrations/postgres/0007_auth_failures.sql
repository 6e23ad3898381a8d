-- Failed authentications, counted per minute, reason and peer address (not one audit row
-- each, so that a flood of bad tokens grows the database by a bounded amount).
CREATE TABLE auth_failures (
    minute BIGINT NOT NULL,
    reason TEXT NOT NULL,
    peer   TEXT NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (minute, reason, peer)
);
