-- A membership carries the roles its person may use in the project: the most any token of
-- theirs there can do (a token's effective roles are its own AND these), what the web UI
-- lets them do, and what they may grant through the device flow. Bits as in api-types'
-- RoleSet; existing members keep all eight.
ALTER TABLE memberships ADD COLUMN roles BIGINT NOT NULL DEFAULT 255;
