-- Emergency revocation of a session-signing key (issue 12): a revoked key
-- is no longer published to edges, so every token it signed dies at once,
-- unlike a rotation, which keeps the retired key verifying for a week.
ALTER TABLE signing_keys ADD COLUMN revoked_ms BIGINT;
