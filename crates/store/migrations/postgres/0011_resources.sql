-- Resources (issue 13): what a job asks of the batch system, validated against its job type
-- (JSON text, canonical values: bytes, seconds; '{}' for none), and what the batch system
-- granted its latest batch job as the agent last reported it (JSON text, NULL until then).
ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN granted_resources TEXT;
