-- A terminate-all revokes the user's tokens issued at or before an instant
-- in milliseconds (issue 13). In whole seconds, a login later in the same
-- second as the termination was refused for ever while listed as active.
-- A row written in seconds keeps revoking everything it did: the last
-- millisecond of its second. `revoked_before_s` is no longer read or written.
ALTER TABLE users ADD COLUMN revoked_before_ms INTEGER;
UPDATE users SET revoked_before_ms = revoked_before_s * 1000 + 999 WHERE revoked_before_s IS NOT NULL;
